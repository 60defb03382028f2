"""The deployment files: Prometheus config and alerts, Grafana, docker-compose, Kubernetes, Dockerfile.

No Docker engine or cluster is needed: the files are checked statically (PyYAML, json) and, for
Prometheus, with the real promtool (`promtool check config`, `check rules`, `test rules`).
promtool comes from Debian's `prometheus` package: `bash scripts/install-test-tools.sh`. Without it
the promtool tests are skipped, except on CI (CI set), where they fail instead.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
K8S = DEPLOY / "k8s"
DASHBOARD = GRAFANA / "dashboards" / "segments.json"
COMPOSE = ROOT / "docker-compose.yml"

# The worker's metrics (a contract: alerts and dashboards rely on these names). Counters with their
# _total suffix, as exposed; histograms by base name (their _bucket, _sum and _count series count too).
CONTRACT_METRICS = {
    "segments_events_total": "counter",               # {topic, type, outcome}
    "segments_changes_total": "counter",              # {segment, change}
    "segments_members": "gauge",                      # {segment}
    "segments_event_to_change_seconds": "histogram",
    "segments_batch_duration_seconds": "histogram",
    "segments_batch_messages": "histogram",
    "segments_consumer_lag": "gauge",                 # {topic, partition}
    "segments_state_customers": "gauge",              # {partition}
    "segments_state_cache_hits_total": "counter",
    "segments_state_cache_misses_total": "counter",
    "segments_timers_pending": "gauge",
    "segments_timers_fired_total": "counter",
    "segments_timer_overdue_seconds": "gauge",
    "segments_rebalances_total": "counter",           # {kind}
    "segments_restore_records_total": "counter",
    "segments_partitions_restoring": "gauge",
    "segments_assigned_partitions": "gauge",
    "segments_ready": "gauge",
    "segments_up": "gauge",
    "segments_broker_up": "gauge",
}
# Series Prometheus itself records for every scrape target.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

EXPECTED_ALERTS = {
    "SegmentsWorkerDown", "SegmentsConsumerLagGrowing", "SegmentsDeadLettersRising",
    "SegmentsNoEvents", "SegmentsRestoreStuck", "SegmentsTimersOverdue", "SegmentsBrokerUnreachable",
}
SEVERITIES = {"critical", "warning", "info"}
WORKER_SERVICES = ("worker-1", "worker-2")


def load_yaml(path: Path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def alert_rules() -> list[dict]:
    doc = load_yaml(PROMETHEUS / "alerts.yml")
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


# ---- PromQL metric names ---------------------------------------------------------------------------

_NOT_METRICS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                "unless", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a lexical approximation that is enough for
    the expressions here: strings, label matchers, ranges, grouping labels and Grafana variables
    are dropped, and what remains that is not a function call or a keyword is a metric name)."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\$\{[^}]*\}|\$\w+", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?", expr):
        name, call = match.groups()
        if call is None and name.lower() not in _NOT_METRICS:
            names.add(name)
    return names


def contract_name(name: str) -> str | None:
    """The contract metric a series name belongs to, or None."""
    if name in CONTRACT_METRICS:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)] if name.endswith(suffix) else None
        if base and CONTRACT_METRICS.get(base) == "histogram":
            return base
    return None


def assert_contract_metrics(exprs: dict[str, str]) -> set[str]:
    """Every metric the expressions use is in the contract (or Prometheus' own); the contract
    metrics used."""
    unknown, used = {}, set()
    for where, expr in exprs.items():
        for name in metric_names(expr):
            base = contract_name(name)
            if base is not None:
                used.add(base)
            elif name not in PROMETHEUS_SERIES:
                unknown.setdefault(name, []).append(where)
    assert not unknown, f"metrics outside the contract: {unknown}"
    return used


def test_metric_name_extraction():
    expr = ('histogram_quantile(0.99, sum by (le) (rate(segments_batch_duration_seconds_bucket'
            '{job="segments", instance=~"$instance"}[$__rate_interval]))) > on (job) group_left (x) '
            'max without (instance) (up{job="a{b}"} offset 5m) * 60 and bool absent(segments_ready)')
    assert metric_names(expr) == {"segments_batch_duration_seconds_bucket", "up", "segments_ready"}
    assert contract_name("segments_batch_duration_seconds_bucket") == "segments_batch_duration_seconds"
    assert contract_name("segments_members_bucket") is None      # not a histogram
    assert contract_name("segments_events") is None             # counters keep their _total


# ---- promtool ----------------------------------------------------------------------------------------

def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = ("promtool is not installed: run `bash scripts/install-test-tools.sh` "
                   "(installs Debian's prometheus package)")
        if _on_ci():
            pytest.fail(message + "; on CI (CI is set) this is a failure, not a skip")
        pytest.skip(message)
    return path


def run_promtool(promtool: str, *args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *map(str, args)], capture_output=True, text=True, timeout=120)


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"{' '.join(result.args)}:\n{result.stdout}\n{result.stderr}"


def test_promtool_check_config(promtool):
    assert_ok(run_promtool(promtool, "check", "config", PROMETHEUS / "prometheus.yml"))


def test_promtool_check_kubernetes_config(promtool, tmp_path):
    path = PROMETHEUS / "prometheus-kubernetes.yml"
    result = run_promtool(promtool, "check", "config", path)
    if result.returncode != 0 and "kubernetes_sd_configs not found" in result.stdout + result.stderr:
        # Debian's promtool is built without Kubernetes discovery: check everything else (the
        # relabelling above all) with static targets in its place.
        doc = load_yaml(path)
        for job in doc["scrape_configs"]:
            if job.pop("kubernetes_sd_configs", None) is not None:
                job["static_configs"] = [{"targets": ["segments-worker-0:9308"]}]
        doc["rule_files"] = [str(PROMETHEUS / name) for name in doc["rule_files"]]
        copy = tmp_path / "prometheus-kubernetes.yml"
        copy.write_text(yaml.safe_dump(doc))
        result = run_promtool(promtool, "check", "config", copy)
    assert_ok(result)


def test_promtool_check_rules(promtool):
    result = run_promtool(promtool, "check", "rules", PROMETHEUS / "alerts.yml")
    assert_ok(result)
    assert f"{len(EXPECTED_ALERTS)} rules found" in result.stdout


def test_promtool_test_rules(promtool):
    # Run from the file's folder, as promtool resolves rule_files relative to it anyway.
    result = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS,
                            capture_output=True, text=True, timeout=120)
    assert_ok(result)
    assert "SUCCESS" in result.stdout


# ---- prometheus.yml, alerts.yml, alerts_test.yml ------------------------------------------------------

def test_prometheus_config_scrapes_the_compose_workers():
    doc = load_yaml(PROMETHEUS / "prometheus.yml")
    assert doc["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in doc["scrape_configs"]}
    assert "segments" in jobs
    targets = {t for sc in jobs["segments"]["static_configs"] for t in sc["targets"]}
    compose = load_yaml(COMPOSE)["services"]
    expected = {f"{compose[name].get('hostname', name)}:{compose[name]['environment']['SEGMENTS_METRICS_PORT']}"
                for name in WORKER_SERVICES}
    assert targets == expected == {"worker-1:9308", "worker-2:9308"}
    assert jobs["segments"].get("metrics_path", "/metrics") == "/metrics"


def test_kubernetes_scrape_config_matches_the_statefulset():
    doc = load_yaml(PROMETHEUS / "prometheus-kubernetes.yml")
    assert doc["rule_files"] == ["alerts.yml"]
    (job,) = [job for job in doc["scrape_configs"] if job["job_name"] == "segments"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    keep = {tuple(r["source_labels"]): r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep"}
    pod = statefulset()["spec"]["template"]
    assert keep[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)] == \
        pod["metadata"]["labels"]["app.kubernetes.io/name"]
    assert keep[("__meta_kubernetes_pod_container_port_name",)] in \
        {p["name"] for p in pod["spec"]["containers"][0]["ports"]}


def test_alerts_are_the_expected_ones_with_for_severity_and_annotations():
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert sorted(names) == sorted(EXPECTED_ALERTS)
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name}: needs a `for:` duration"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity label"
        annotations = rule.get("annotations", {})
        assert annotations.get("summary", "").strip(), f"{name}: summary annotation"
        assert annotations.get("description", "").strip(), f"{name}: description annotation"


def test_worker_down_alert_selects_the_segments_job():
    (rule,) = [r for r in alert_rules() if r["alert"] == "SegmentsWorkerDown"]
    assert re.fullmatch(r'up\{job="segments"\}\s*==\s*0', rule["expr"].strip())


def test_every_alert_has_a_firing_and_a_quiet_test_case():
    tests = load_yaml(PROMETHEUS / "alerts_test.yml")
    assert tests["rule_files"] == ["alerts.yml"]
    firing, quiet = set(), set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
            for alert in check.get("exp_alerts") or []:
                # A firing case states what the alert says, not only that it fires.
                assert alert.get("exp_labels", {}).get("severity"), check["alertname"]
                assert set(alert.get("exp_annotations", {})) >= {"summary", "description"}, check["alertname"]
    missing_firing = EXPECTED_ALERTS - firing
    missing_quiet = EXPECTED_ALERTS - quiet
    assert not missing_firing, f"alerts with no test case where they fire: {sorted(missing_firing)}"
    assert not missing_quiet, f"alerts with no test case where they do not fire: {sorted(missing_quiet)}"
    assert firing | quiet <= EXPECTED_ALERTS, "test cases for alerts that do not exist"


def test_alert_metrics_are_in_the_contract():
    used = assert_contract_metrics({rule["alert"]: rule["expr"] for rule in alert_rules()})
    assert {"segments_events_total", "segments_consumer_lag", "segments_partitions_restoring",
            "segments_ready", "segments_timer_overdue_seconds"} <= used


# ---- Grafana ----------------------------------------------------------------------------------------

def dashboard() -> dict:
    with open(DASHBOARD, encoding="utf-8") as handle:
        return json.load(handle)


def dashboard_exprs() -> dict[str, str]:
    exprs = {}
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            exprs[f"{panel['title']} / {target['refId']}"] = target["expr"]
    for variable in dashboard().get("templating", {}).get("list", []):
        query = variable.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        if variable.get("type") == "query" and query:
            inner = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", query)
            exprs[f"variable {variable['name']}"] = inner.group(1) if inner else query
    return exprs


# What each of the six panels must show: a title word and what its queries must contain.
PANELS = {
    "throughput": (r"throughput", [r"rate\(segments_events_total", r"by \(outcome\)"]),
    "consumer lag": (r"lag", [r"segments_consumer_lag"]),
    "segment sizes": (r"segment sizes", [r"segments_members"]),
    "moves per minute": (r"moves per minute", [r"rate\(segments_changes_total", r"segment", r"\* 60"]),
    "latency percentiles": (r"latency", [r"histogram_quantile\(.*segments_event_to_change_seconds_bucket",
                                         r"histogram_quantile\(.*segments_batch_duration_seconds_bucket"]),
    "dead letters": (r"dead letters", [r'outcome="dead_letter"']),
}


def test_dashboard_has_the_six_panels():
    panels = dashboard()["panels"]
    assert len(panels) == len(PANELS)
    for what, (title, patterns) in PANELS.items():
        matching = [p for p in panels if re.search(title, p["title"], re.IGNORECASE)]
        assert len(matching) == 1, f"one panel for {what}, found {[p['title'] for p in matching]}"
        queries = " ".join(t["expr"] for t in matching[0]["targets"])
        for pattern in patterns:
            assert re.search(pattern, queries), f"{what}: no query matches {pattern!r}"
    latency = next(p for p in panels if re.search("latency", p["title"], re.IGNORECASE))
    quantiles = {re.match(r"histogram_quantile\(([\d.]+)", t["expr"]).group(1) for t in latency["targets"]}
    assert {"0.5", "0.95", "0.99"} <= quantiles
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids)


def test_dashboard_metrics_are_in_the_contract():
    used = assert_contract_metrics(dashboard_exprs())
    assert {"segments_events_total", "segments_changes_total", "segments_members", "segments_consumer_lag",
            "segments_event_to_change_seconds", "segments_batch_duration_seconds"} <= used


def test_dashboard_queries_are_valid_promql(promtool, tmp_path):
    # promtool parses every query as a recording rule, Grafana's variables given example values.
    values = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "$instance": ".*"}
    rules = []
    for i, expr in enumerate(dashboard_exprs().values()):
        for variable, value in values.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert_ok(run_promtool(promtool, "check", "rules", path))


def test_grafana_provisioning():
    sources = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    (prometheus,) = [s for s in sources if s["type"] == "prometheus"]
    assert prometheus["url"] == "http://prometheus:9090"
    uids = {p["datasource"]["uid"] for p in dashboard()["panels"]}
    assert uids == {prometheus["uid"]}, "the dashboard must use the provisioned datasource"

    (provider,) = load_yaml(GRAFANA / "provisioning" / "dashboards" / "segments.yml")["providers"]
    assert provider["type"] == "file"
    grafana = load_yaml(COMPOSE)["services"]["grafana"]
    mounts = dict(parse_mount(m)[:2][::-1] for m in grafana["volumes"])   # container path -> source
    assert mounts[provider["options"]["path"]] == "./deploy/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"


# ---- docker-compose.yml -----------------------------------------------------------------------------

def compose() -> dict:
    return load_yaml(COMPOSE)


def parse_mount(spec: str) -> tuple[str, str, str]:
    source, target, *mode = spec.split(":")
    return source, target, (mode[0] if mode else "rw")


def test_compose_services():
    services = compose()["services"]
    assert {"kafka", "topics", *WORKER_SERVICES, "prometheus", "grafana"} <= set(services)


def test_compose_images_are_pinned_to_exact_versions():
    for name, service in compose()["services"].items():
        image = service.get("image")
        assert image, f"{name}: no image (a built service needs an image: name:tag too)"
        assert "@sha256:" in image or re.fullmatch(r"[\w./-]+:[\w.-]+", image), f"{name}: {image} has no tag"
        tag = image.rsplit(":", 1)[1]
        assert tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag), f"{name}: {image} is not an exact version"


def test_compose_kafka_is_kraft_with_a_healthcheck():
    kafka = compose()["services"]["kafka"]
    assert kafka["image"].startswith(("apache/kafka:", "bitnami/kafka:"))
    env = kafka["environment"]
    assert "controller" in str(env.get("KAFKA_PROCESS_ROLES", env.get("KAFKA_CFG_PROCESS_ROLES", "")))
    check = kafka["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1
    assert {"interval", "timeout", "retries"} <= set(check)
    # The workers' transactions and offsets need these internal topics on a single broker.
    assert str(env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == "1"
    assert str(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == "1"
    assert "kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_compose_start_order():
    services = compose()["services"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in WORKER_SERVICES:
        assert services[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] in ("service_healthy", "service_started")
    assert services["topics"].get("restart", "no") == "no"


def test_compose_workers():
    doc = compose()
    services, volumes = doc["services"], doc["volumes"]
    instance_ids, state_volumes = set(), set()
    for name in WORKER_SERVICES:
        worker = services[name]
        assert worker["build"]["context"] == "."
        env = worker["environment"]
        assert env["SEGMENTS_BOOTSTRAP_SERVERS"] == "kafka:9092"
        instance_ids.add(env["SEGMENTS_INSTANCE_ID"])
        mounts = [parse_mount(m) for m in worker["volumes"]]
        state = [(source, target) for source, target, _ in mounts
                 if Path(env["SEGMENTS_STATE_DIR"]).is_relative_to(target)]
        assert len(state) == 1, f"{name}: SEGMENTS_STATE_DIR must lie on a volume"
        assert state[0][0] in volumes, f"{name}: the state volume must be a named volume"
        state_volumes.add(state[0][0])
    assert len(instance_ids) == len(WORKER_SERVICES), "every worker needs its own instance id"
    assert len(state_volumes) == len(WORKER_SERVICES), "every worker needs its own state volume"


def test_compose_ports():
    services = compose()["services"]

    def published(name):
        return {str(p).split(":")[-2] + ":" + str(p).split(":")[-1] for p in services[name].get("ports", [])}

    assert "3000:3000" in published("grafana")
    assert "9090:9090" in published("prometheus")


def test_compose_publishes_every_port_on_loopback_only():
    """Kafka's host listener has no authentication and holds every event (personal data), Prometheus
    runs with --web.enable-lifecycle (any caller may stop it), Grafana lets anonymous viewers in:
    none of them may be reachable from beyond this machine, as the workers' ports are not."""
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            spec = port if isinstance(port, dict) else {"host_ip": str(port).rsplit(":", 2)[0]
                                                        if str(port).count(":") == 2 else None}
            assert spec.get("host_ip") == "127.0.0.1", f"{name}: {port} is published on every interface"


def test_compose_mounts_exist():
    for name, service in compose()["services"].items():
        for spec in service.get("volumes", []):
            source = parse_mount(spec)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
    prometheus = compose()["services"]["prometheus"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]


def worker_config(env: dict):
    """The worker's configuration from these SEGMENTS_* variables, as `segments worker` loads it;
    an unknown SEGMENTS_ variable (which the worker would silently ignore) fails."""
    from stream.cli.settings_args import add_worker_arguments, load_config
    from stream.runtime.options import CONFIG_ENV, KAFKA_ENV_PREFIX, env_of
    from stream.runtime.settings import WorkerConfig
    known = {env_of(f.name) for f in dataclasses.fields(WorkerConfig) if f.name != "kafka"} | {CONFIG_ENV}
    unknown = [k for k in env if k.startswith("SEGMENTS_") and k not in known and not k.startswith(KAFKA_ENV_PREFIX)]
    assert not unknown, f"not settings of the worker: {unknown}"
    parser = argparse.ArgumentParser()
    add_worker_arguments(parser)
    return load_config(parser.parse_args([]), environ={k: str(v) for k, v in env.items()})


def test_compose_worker_settings_are_valid():
    for name in WORKER_SERVICES:
        config = worker_config(compose()["services"][name]["environment"])
        assert config.bootstrap_servers == "kafka:9092"
        assert config.metrics_port == 9308


def _gitignored(path: str) -> bool:
    done = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, timeout=30)
    return done.returncode == 0


def _token_variables(env: dict) -> list[str]:
    """Variables that would put an HTTP token itself (not its file's path) in the environment."""
    return [k for k in env if "TOKEN" in k.upper() and k != "SEGMENTS_HTTP_TOKEN_FILE"]


def test_compose_workers_publish_http_on_loopback_only_with_the_token_from_a_secret_file():
    doc = compose()
    for name in WORKER_SERVICES:
        worker = doc["services"][name]
        for port in worker["ports"]:
            host, _, _ = str(port).rpartition(":")[0].rpartition(":")
            assert host == "127.0.0.1", f"{name}: {port} publishes the worker's HTTP port beyond this machine"
        env = worker["environment"]
        config = worker_config(env)
        # Prometheus scrapes over the compose network: the container binds every interface.
        assert config.http_host == "0.0.0.0"
        assert not _token_variables(env), f"{name}: a token in the environment"
        (secret,) = [s if isinstance(s, str) else s["source"] for s in worker["secrets"]]
        target = f"/run/secrets/{secret}"
        assert config.http_token_file == Path(target), f"{name}: SEGMENTS_HTTP_TOKEN_FILE is not the secret's file"
        source = doc["secrets"][secret]["file"]
        assert _gitignored(source), f"{source} holds a secret: it must be ignored by git"
    scraped = load_yaml(PROMETHEUS / "prometheus.yml")["scrape_configs"]
    targets = {t for job in scraped for c in job.get("static_configs", []) for t in c["targets"]}
    assert {f"{name}:9308" for name in WORKER_SERVICES} <= targets, "Prometheus scrapes the workers by name"


def test_compose_topics_match_what_the_worker_creates():
    """The topics service creates every topic the worker would, with its partitions and configs."""
    from stream.worker.loop import Worker
    env = compose()["services"]["worker-1"]["environment"]
    config = worker_config(env)
    script = compose()["services"]["topics"]["command"][0].replace("$$", "$")
    script = script.replace("/opt/kafka/bin/kafka-topics.sh", "echo")
    out = subprocess.run(["sh", "-euc", script], capture_output=True, text=True, timeout=30, check=True).stdout
    created = {}
    for line in out.splitlines():
        args = shlex.split(line)
        if "--create" not in args:
            continue
        opts = {"config": {}}
        for flag, value in zip(args, args[1:], strict=False):
            if flag == "--config":
                key, _, val = value.partition("=")
                opts["config"][key] = val
            elif flag in ("--topic", "--partitions", "--replication-factor"):
                opts[flag[2:]] = value
        created[opts["topic"]] = opts
    for topic, partitions, topic_config in Worker.topics(SimpleNamespace(s=config)):
        assert topic in created, f"the topics service does not create {topic}"
        assert int(created[topic]["partitions"]) == partitions, topic
        assert int(created[topic]["replication-factor"]) == config.replication_factor, topic
        assert created[topic]["config"] == {k: str(v) for k, v in topic_config.items()}, topic


# ---- Kubernetes -------------------------------------------------------------------------------------

def k8s_documents() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        with open(path, encoding="utf-8") as handle:
            docs += [d for d in yaml.safe_load_all(handle) if d]
    return docs


def k8s(kind: str) -> dict:
    (doc,) = [d for d in k8s_documents() if d["kind"] == kind]
    return doc


def statefulset() -> dict:
    return k8s("StatefulSet")


def test_k8s_manifests_parse():
    docs = k8s_documents()
    kinds = {d["kind"] for d in docs}
    assert {"StatefulSet", "Service", "ConfigMap"} <= kinds
    for doc in docs:
        assert doc.get("apiVersion") and doc["kind"], doc
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"]
    kustomization = load_yaml(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_k8s_statefulset():
    sts = statefulset()
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()

    # Probes on the metrics port.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert get["port"] in ports or get["port"] in ports.values(), probe

    # Resources.
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]

    # A persistent volume holds the state dir.
    (claim,) = spec["volumeClaimTemplates"]
    assert "ReadWriteOnce" in claim["spec"]["accessModes"] and claim["spec"]["resources"]["requests"]["storage"]
    configmap = k8s("ConfigMap")
    state_dir = configmap["data"]["SEGMENTS_STATE_DIR"]
    mounts = [m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    assert len(mounts) == 1 and Path(state_dir).is_relative_to(mounts[0]["mountPath"])

    # Settings from the ConfigMap; the instance id is the pod name.
    assert {"configMapRef": {"name": configmap["metadata"]["name"]}} in container["envFrom"]
    (instance,) = [e for e in container["env"] if e["name"] == "SEGMENTS_INSTANCE_ID"]
    assert instance["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"

    # Time to commit the last batch after SIGTERM (transactions time out after 60 s).
    assert pod["terminationGracePeriodSeconds"] >= 60

    # Scraped on the metrics port.
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"] == int(configmap["data"]["SEGMENTS_METRICS_PORT"])
    assert annotations.get("prometheus.io/path", "/metrics") == "/metrics"

    image = container["image"]
    tag = image.rsplit(":", 1)[1] if ":" in image else ""
    assert tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag), image


def test_k8s_headless_service():
    service, sts = k8s("Service"), statefulset()
    assert service["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()


def test_k8s_configmap_settings_are_valid():
    data = k8s("ConfigMap")["data"]
    config = worker_config({**data, "SEGMENTS_INSTANCE_ID": "segments-worker-0"})
    assert config.bootstrap_servers and config.metrics_port == 9308


def test_k8s_token_is_a_mounted_secret_file_and_the_probes_reach_the_pod():
    data = k8s("ConfigMap")["data"]
    config = worker_config({**data, "SEGMENTS_INSTANCE_ID": "segments-worker-0"})
    assert config.http_host == "0.0.0.0", "the kubelet probes and Prometheus scrape the pod's IP"
    assert not _token_variables(data)
    pod = statefulset()["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert not _token_variables({e["name"]: e for e in container.get("env", [])})
    token = config.http_token_file
    (mount,) = [m for m in container["volumeMounts"] if token.is_relative_to(m["mountPath"])]
    assert mount.get("readOnly") is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    secret = volume["secret"]
    # The files belong to root and the fsGroup: the worker (runAsUser, in that group) reads them
    # through the group bits, and nobody else can.
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    assert secret["defaultMode"] & 0o040 and not secret["defaultMode"] & 0o007
    kustomization = load_yaml(K8S / "kustomization.yaml")
    (generator,) = [g for g in kustomization["secretGenerator"] if g["name"] == secret["secretName"]]
    keys = {f.split("=", 1)[0] if "=" in f else Path(f).name: f.split("=", 1)[-1] for f in generator["files"]}
    key = str(token.relative_to(mount["mountPath"]))
    assert key in keys, f"the Secret has no key {key}"
    assert _gitignored(str(Path("deploy/k8s") / keys[key])), "the token file must be ignored by git"


# ---- Dockerfile, install script --------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
            for line in lines if line and not line.startswith("#")]


def test_dockerfile():
    instructions = dockerfile_instructions()
    args = dict(a.split("=", 1) for kind, a in instructions if kind == "ARG" and "=" in a)
    bases = [a.split()[0] for kind, a in instructions if kind == "FROM"]
    for base in bases:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", image), f"unpinned base image {image}"
    last = {kind: a for kind, a in instructions}
    assert json.loads(last["ENTRYPOINT"]) == ["segments"]
    assert json.loads(last["CMD"]) == ["worker"]
    assert "9308" in last["EXPOSE"].split()
    user = last["USER"].split(":")[0]
    assert user not in ("root", "0"), "the image must not run as root"
    stages = "\n".join(f"{k} {a}" for k, a in instructions)
    assert re.search(r"pip (install|wheel)\b", stages)
    # The wheel carries the engine's compiled modules: the stage that builds it has a C compiler and
    # setup.py (which lists them) before it runs pip.
    build = stages.split("\nFROM ")[1]
    assert re.search(r"apt-get install\b[^\n]*\bgcc\b[^\n]*\n(.*\n)*RUN pip wheel\b", build), build
    assert re.search(r"^COPY\b[^\n]*\bsetup\.py\b", build, re.M), build


def test_dockerignore_keeps_the_package_and_drops_the_rest():
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "allow-list: ignore everything, then re-include what the build copies"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for kind, arg in dockerfile_instructions():
        if kind == "COPY" and "--from" not in arg:
            copied |= {s.rstrip("/").removeprefix("./") for s in arg.split()[:-1] if not s.startswith("--")}
    assert copied and copied <= included, f"the build copies what .dockerignore leaves out: {copied - included}"


def test_install_script_is_valid_bash():
    script = ROOT / "scripts" / "install-test-tools.sh"
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    text = script.read_text()
    assert "command -v promtool" in text and "apt-get update" in text and "apt-get install" in text
