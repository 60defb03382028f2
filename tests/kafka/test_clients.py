"""Every Kafka client the product creates takes the configured security settings (stream.kafka.clients),
librdkafka properties are checked at start, and broker trouble is said at a bounded rate."""
from __future__ import annotations

import ast
import logging
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException

from stream.backfill import handoff, sinks
from stream.backfill import plan as backfill_plan
from stream.kafka import clients, definitions_feed, topic_admin
from stream.rules.catalog import load_catalog
from stream.runtime import metrics
from stream.runtime.settings import WorkerConfig
from stream.tools import produce
from stream.worker import loop
from tests.client_configs import SECURE, has_settings, reach

STREAM = Path(__file__).resolve().parents[2] / "stream"
_BUILDERS = {"client_config", "worker_client_config", "_common", "consumer_config"}
_CONFIG_PARAMS = {"client", "common"}
# Sites that may build a client from something else: the embedded broker's own start-up probe
# (it has no security settings to take), the throwaway clients that check the properties, and
# the benchmarks and demo, which run only against the embedded broker they start.
_EXEMPT = {("kafka/embedded_broker.py", "_wait_ready"), ("kafka/clients.py", "kafka_problems"),
           # dict(client), or a bare bootstrap string (see the ensure_topics test)
           ("kafka/topic_admin.py", "admin_client")}
_EXEMPT_FILES = {"tools/demo.py", "tools/bench"}


def _functions(tree: ast.Module):
    """Module-level functions and methods (nested functions are walked as part of them)."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node
        elif isinstance(node, ast.ClassDef):
            yield from (n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))


# The client constructors, and the product's classes that take a client config to build theirs.
_CLIENTS = ("Consumer", "Producer", "AdminClient", "admin_client", "DefinitionsFeed", "BrokerProbe")


def _sites(names=_CLIENTS) -> list[tuple[str, ast.FunctionDef, ast.Call]]:
    """Every call of `names` (the client constructors; ensure_topics) in the product's code."""
    found = []
    for path in sorted(STREAM.rglob("*.py")):
        name = path.relative_to(STREAM).as_posix()
        if name in _EXEMPT_FILES or path.parent.relative_to(STREAM).as_posix() in _EXEMPT_FILES:
            continue
        for function in _functions(ast.parse(path.read_text())):
            for node in ast.walk(function):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names:
                    found.append((name, function, node))
    return found


def _built_from_client_config(expr: ast.expr, params: set[str]) -> bool:
    """The config is a client-config builder's result, a dict that unpacks one, or dict(p) of a
    parameter p that callers fill with one (checked at their own sites)."""
    if isinstance(expr, ast.Call):
        name = expr.func.attr if isinstance(expr.func, ast.Attribute) else getattr(expr.func, "id", None)
        if name in _BUILDERS:
            return True
        if name == "dict" and len(expr.args) == 1:
            return isinstance(expr.args[0], ast.Name) and expr.args[0].id in params
        return False
    if isinstance(expr, ast.Dict):
        return any(key is None and _built_from_client_config(value, params)
                   for key, value in zip(expr.keys, expr.values, strict=True))
    if isinstance(expr, ast.Name):
        return expr.id in params
    return False


def _wrong_sites(sites) -> list[str]:
    wrong = []
    for file, function, call in sites:
        if (file, function.name) in _EXEMPT:
            continue
        # Parameters named so carry a client config by convention (their callers are sites too).
        params = {a.arg for a in function.args.args + function.args.kwonlyargs} & _CONFIG_PARAMS
        # A local built from a builder first (client = self._common()) counts too.
        for node in ast.walk(function):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                    and _built_from_client_config(node.value, params):
                params.add(node.targets[0].id)
        if not call.args or not _built_from_client_config(call.args[0], params):
            wrong.append(f"{file}:{call.lineno} in {function.name}: {ast.unparse(call)[:100]}")
    return wrong


def test_every_client_construction_site_takes_the_common_client_config():
    sites = _sites()
    assert len(sites) >= 15, "the enumeration lost sites"
    wrong = _wrong_sites(sites)
    assert not wrong, "clients built without stream.kafka.clients.client_config:\n" + "\n".join(wrong)


def test_every_topic_set_up_takes_the_common_client_config():
    # ensure_topics takes a plain bootstrap string too (the embedded broker, tests): the product's
    # own calls must give it the whole client configuration.
    sites = _sites(("ensure_topics",))
    assert len(sites) >= 6, "the enumeration lost sites"
    wrong = _wrong_sites(sites)
    assert not wrong, "topic set-up without stream.kafka.clients.client_config:\n" + "\n".join(wrong)


def test_the_enumeration_sees_the_sites_that_used_to_ignore_the_settings():
    named = {(f, fn.name) for f, fn, _ in _sites()}
    assert {("kafka/topic_admin.py", "admin_client"), ("tools/produce.py", "produce"),
            ("kafka/definitions_feed.py", "publish"),
            ("worker/loop.py", "_new_producer"), ("backfill/handoff.py", "hand_off")} <= named


def _config() -> WorkerConfig:
    return WorkerConfig(bootstrap_servers="kafka:9092", kafka=dict(SECURE), instance_id="w")


def test_topic_set_up_takes_the_security_settings(built):
    # Before: ensure_topics built its AdminClient from the bootstrap servers alone.
    reach(lambda: topic_admin.ensure_topics(clients.worker_client_config(_config()), [("t", 1, {})]))
    assert has_settings(built[-1])


def test_worker_clients_take_the_security_settings(built, tmp_path):
    w = loop.Worker(_config(), load_catalog())
    for call in (w._new_producer, lambda: w._changelog_end(0), w._caught_up_feed, w._start_up,
                 lambda: clients.BrokerProbe(w._common(), w.watch, [], {})):
        reach(call)
        assert has_settings(built[-1]), built[-1]


def test_commands_clients_take_the_security_settings(built, monkeypatch):
    reach(lambda: definitions_feed.publish("kafka:9092", SECURE, "defs", "x", None))
    reach(lambda: definitions_feed.read_topic("kafka:9092", SECURE, "defs"))
    reach(lambda: produce.produce("kafka:9092", "t", events=1, kafka=SECURE))          # its topic set-up
    monkeypatch.setattr(produce, "ensure_topics", lambda *a, **k: None)
    reach(lambda: produce.produce("kafka:9092", "t", events=1, kafka=SECURE))          # its producer
    config = _config()
    assert has_settings(backfill_plan.consumer_config(config, "read_committed"))
    monkeypatch.setattr(sinks, "ensure_topics", lambda *a, **k: None)
    monkeypatch.setattr(handoff, "ensure_topics", lambda *a, **k: None)
    reach(lambda: sinks.TopicSink(config, "out", 3))
    reach(lambda: handoff.hand_off(config, "g2", {}, None, [], 3, load_catalog()))
    assert len(built) == 6 and all(map(has_settings, built)), built


# ---- librdkafka properties checked at start --------------------------------------------------------

def test_a_problem_never_shows_a_secret_value():
    problems = clients.kafka_problems({"sasl.password": "hunter2", "security.protocol": "hunter2"},
                                      lambda key: "password" in key)
    assert problems and all("hunter2" not in p for p in problems), problems
    assert any('"security.protocol"' in p for p in problems)


def test_valid_properties_pass():
    assert clients.kafka_problems(SECURE, lambda key: False) == []
    assert clients.kafka_problems({}, lambda key: False) == []


# ---- bounded reports ------------------------------------------------------------------------------

class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == name]


def test_librdkafka_lines_are_bounded_per_kind(caplog):
    clock, target = _Clock(), logging.getLogger("test.kafka")
    bound = clients.RateBound(target, every=30, clock=clock)
    with caplog.at_level(logging.INFO, "test.kafka"):
        for second in range(90):           # 20 refused connections a second for 90 s
            clock.now = 1000.0 + second
            for _ in range(20):
                bound.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", "Connection refused")
        bound.log(logging.INFO, "%s [%s] %s", "CLUSTERID", "rdkafka#consumer-1", "other cluster")
    lines = _lines(caplog, "test.kafka")
    assert len(lines) == 4, lines          # FAIL at 0, 30, 60 s; one CLUSTERID
    assert "(599 similar lines in the last 30 s not shown)" in lines[1]


def test_library_warnings_are_bounded_per_kind_and_other_lines_pass():
    """The Faust runtime's aiokafka wrote ~17 "OffsetCommit failed" lines a second while its topics
    were missing; each kind of warning or error at most once per 30 s, with the count held back."""
    clock = _Clock()
    bound = clients.LibraryLogBound(every=30, clock=clock)

    def passes(name: str, level: int, msg: str, *args: object) -> str | None:
        record = logging.LogRecord(name, level, __file__, 1, msg, args, None)
        return record.getMessage() if bound.filter(record) else None

    shown = []
    for second in range(90):
        clock.now = 1000.0 + second
        for partition in range(17):
            shown.append(passes("aiokafka.consumer.group_coordinator", logging.ERROR,
                                "OffsetCommit failed for group %s on partition %s", "g", partition))
    shown = [line for line in shown if line is not None]
    assert len(shown) == 3, shown               # at 0, 30 and 60 s
    assert shown[1].endswith("(509 similar lines in the last 30 s not shown)"), shown[1]
    assert passes("aiokafka.conn", logging.ERROR, "Unable connect to node %s", 1) is not None   # another kind
    assert passes("aiokafka.conn", logging.INFO, "connected") is not None                       # info: untouched
    for _ in range(3):                          # our own lines: never held back
        assert passes("segments.faust", logging.ERROR, "a problem") == "a problem"
        assert passes("modest.thing", logging.ERROR, "not mode's") == "not mode's"


def test_broker_watch_says_it_once_per_bound_and_once_when_back(caplog):
    clock, target = _Clock(), logging.getLogger("test.watch")
    watch = clients.BrokerWatch("kafka:9092", target, every=30, clock=clock)
    with caplog.at_level(logging.WARNING, "test.watch"):
        for second in range(0, 75, 5):
            clock.now = 1000.0 + second
            watch.down("Failed to get metadata: Local: Broker transport failure")
            assert metrics.BROKER_UP._value.get() == 0
        assert "unreachable for 70 s" in watch.problem()
        watch.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
        assert "1/1 brokers are down" in watch.problem()
        assert watch.suspect.is_set()          # the probe checks at once
        watch.up()
        watch.up()
    assert watch.problem() is None and metrics.BROKER_UP._value.get() == 1
    lines = _lines(caplog, "test.watch")
    assert len(lines) == 4, lines          # at 0, 30 and 60 s, and once back
    assert "unreachable" in lines[0] and "still unreachable after 30 s" in lines[1]
    assert "answer again, after 70 s" in lines[3]


def test_a_flapping_broker_is_still_said_at_most_once_per_bound(caplog):
    clock, target = _Clock(), logging.getLogger("test.flap")
    watch = clients.BrokerWatch("kafka:9092", target, every=30, clock=clock)
    with caplog.at_level(logging.WARNING, "test.flap"):
        for second in range(0, 60, 2):      # down and up again every 2 s for a minute
            clock.now = 1000.0 + second
            watch.down("refused")
            clock.now += 1
            watch.up()
    assert len([line for line in _lines(caplog, "test.flap") if "unreachable (" in line]) == 2, \
        _lines(caplog, "test.flap")


# ---- readiness ------------------------------------------------------------------------------------

def test_probe_takes_a_topic_problem_only_when_seen_twice_in_a_row(monkeypatch):
    missing = ["topic 't' does not exist"]
    answers = iter([missing, [], missing, KafkaException(KafkaError(KafkaError._TRANSPORT, "refused")), missing])
    watch = clients.BrokerWatch("kafka:9092")

    def problems(*args, **kwargs):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer
    monkeypatch.setattr(clients, "topic_problems", problems)
    monkeypatch.setattr(clients, "admin_client", lambda config: None)
    probe = clients.BrokerProbe({}, watch, [], {})
    for _ in range(3):          # missing, fine, missing: a broker still loading its metadata
        probe.check()
        assert probe.topics_problem is None and watch.problem() is None
    probe.check()               # no answer: the brokers, not the topics
    assert probe.topics_problem is None and "refused" in watch.problem()
    probe.check()               # missing again, the second time in a row with an answer
    assert watch.problem() is None
    assert "topic 't' does not exist" in probe.topics_problem and "wiped" in probe.topics_problem
