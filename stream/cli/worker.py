"""`segments worker`: keep segments live from Kafka topics, on the native runtime or the Faust one."""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from stream.cli.settings_args import add_worker_arguments, check_kafka, load_config


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wp = sub.add_parser("worker", help="keep segments live from Kafka topics (the main job)",
                        description="Consume shop events from Kafka, keep per-customer state in RocksDB and publish "
                                    "every segment move. Settings come from flags, then SEGMENTS_* environment "
                                    "variables, then the --config file, then defaults. With no bootstrap servers it "
                                    "starts an embedded broker whose topics vanish when it stops.")
    add_worker_arguments(wp)
    wp.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import logging
    import signal

    from stream.kafka.embedded_broker import EmbeddedBroker
    from stream.kafka.topic_admin import TopicsNotAsExpected
    from stream.rules.catalog import load_catalog
    from stream.rules.problems import DefinitionError
    from stream.runtime.http import HttpSetupError, read_token
    from stream.runtime.settings import ConfigError
    from stream.worker.loop import Worker

    try:
        config = load_config(args)
        catalog = load_catalog(config.segments_file)
        if config.metrics_port and config.http_token_file is not None:
            read_token(config.http_token_file)     # an unusable token file stops the start before anything runs
        # Here rather than in load_config: members and explain read the same settings without any
        # Kafka client, maybe where the files they name are absent.
        check_kafka(config)
    except (ConfigError, DefinitionError, HttpSetupError) as exc:
        print(f"segments worker: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("segments.worker")
    with contextlib.ExitStack() as stack:
        if config.bootstrap_servers is None:
            broker = stack.enter_context(EmbeddedBroker())
            log.warning("no bootstrap servers configured: started an embedded broker at %s. It keeps "
                        "everything in memory: its topics vanish when it stops.", broker.bootstrap)
            config = dataclasses.replace(config, bootstrap_servers=broker.bootstrap)
        if config.instance_id is None:
            config = dataclasses.replace(config, instance_id=_instance_id(config.state_dir))
        log.info("configuration: %s", config.describe())
        try:
            if config.runtime == "faust":
                from stream.faust_runtime.app import run as run_faust
                return run_faust(config, catalog)     # Faust stops itself on SIGINT and SIGTERM
            worker = Worker(config, catalog)
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: worker.stop())
            worker.run()
        except HttpSetupError as exc:         # the metrics port cannot be bound (the token file was read above)
            print(f"segments worker: {exc}", file=sys.stderr)
            return 1
        except TopicsNotAsExpected as exc:
            # Exit 3: a restart (Kubernetes, compose) creates missing topics again at start-up.
            log.error("stopping: %s. Every committed batch is in Kafka and in the local state; "
                      "exit 3 so that the worker is restarted", exc)
            return 3
        log.info("stopped: every committed batch is in Kafka and in the local state")
    return 0


def _instance_id(state_dir: Path) -> str:
    """A stable id kept beside the state: a restarted worker reuses its transactional id, which
    fences its previous incarnation and aborts that one's open transaction."""
    import uuid

    path = state_dir / "instance-id"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    instance = uuid.uuid4().hex[:12]
    path.write_text(instance + "\n")
    return instance
