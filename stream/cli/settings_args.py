"""The worker's settings as command-line flags: a flag per WorkerConfig field, --config and -X, and
the parsed flags handed to stream.runtime.settings, which reads the environment and the file and
checks everything. Also the -X parser of every command: KEY=VALUE, the one rule for all of them.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from stream.runtime.options import CONFIG_ENV, KAFKA_ENV_PREFIX, OPTIONS, env_of, flag_of, shown
from stream.runtime.settings import DEFAULTS, ConfigError, Flags, WorkerConfig, is_secret_key, load_worker_config

T = TypeVar("T")


def arg_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser that raises ValueError with a message fit to show."""
    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


def port_number(text: str) -> int:
    """A --port (0: any free one), for arg_type."""
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise ValueError(f"a port is 0 to 65535, got {text!r}")
    return int(text)


def kafka_property(text: str) -> tuple[str, str]:
    """One -X KEY=VALUE: the key without surrounding blanks, the value as given (it may be a password)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def add_worker_arguments(parser: argparse.ArgumentParser, names: Collection[str] | None = None,
                         kafka: bool = True) -> None:
    """Add a flag for every WorkerConfig field (or only those in `names`: another command that
    reads the worker's settings, such as backfill), plus --config and -X (unless `kafka` is false: a
    command that makes no Kafka client, such as members, has no use for librdkafka properties). Each
    defaults to None, so that load_config can tell a flag that was not given from one that was."""
    parser.add_argument("--config", metavar="FILE",
                        help=f"YAML file of settings: keys are the long flags below without -- and with _ for - "
                             f"(segments_file for --segments), librdkafka properties go under kafka: "
                             f"(env {CONFIG_ENV}; default: none)")
    if kafka:
        parser.add_argument("-X", dest="kafka", action="append", type=arg_type(kafka_property), metavar="KEY=VALUE",
                            help=f"librdkafka property passed through, such as security.protocol=SASL_SSL; "
                                 f"repeatable (env {KAFKA_ENV_PREFIX}<KEY>, the key upper-cased with . as _, e.g. "
                                 f"{KAFKA_ENV_PREFIX}SECURITY_PROTOCOL; default: none)")
    for name, opt in OPTIONS.items():
        if names is not None and name not in names:
            continue
        help_text = f"{opt.help} (env {env_of(name)}; default: {shown(DEFAULTS[name])})"
        if opt.choices:
            parser.add_argument(flag_of(name), dest=name, default=None, choices=opt.choices, help=help_text)
        else:
            parser.add_argument(flag_of(name), dest=name, default=None, type=arg_type(opt.kind.from_text),
                                metavar=opt.metavar or opt.kind.metavar, help=help_text)


def add_kafka_arguments(parser: argparse.ArgumentParser) -> None:
    """The librdkafka properties of a command that talks to the workers' cluster: the workers' own
    (SEGMENTS_KAFKA_<KEY>, the kafka: section of --config), so that security settings need not be
    typed again (nor shown in the process list), and -X on top."""
    parser.add_argument("--config", metavar="FILE",
                        help="the workers' settings file: its kafka: properties apply (env SEGMENTS_CONFIG)")
    parser.add_argument("-X", dest="kafka", action="append", default=[], type=arg_type(kafka_property),
                        metavar="KEY=VALUE",
                        help="librdkafka property, repeatable; wins over SEGMENTS_KAFKA_<KEY> and the file")


def load_config(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> WorkerConfig:
    """The worker's configuration from flags added by add_worker_arguments, the environment and the
    config file (stream.runtime.settings.load_worker_config)."""
    values: dict[str, Any] = {}
    for name in OPTIONS:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    return load_worker_config(Flags(values, args.config, tuple(getattr(args, "kafka", None) or ())), environ)


def kafka_properties(command: str, args: argparse.Namespace) -> dict[str, str] | None:
    """The librdkafka properties of a command added by add_kafka_arguments, as the workers take them
    (file < SEGMENTS_KAFKA_* < -X), checked by librdkafka itself; None after saying what is wrong."""
    from stream.kafka.clients import kafka_problems

    try:
        kafka = dict(load_worker_config(Flags(config=args.config, kafka=tuple(args.kafka))).kafka)
        problems = kafka_problems(kafka, is_secret_key)
    except ConfigError as exc:
        problems = exc.problems
    for problem in problems:
        print(f"segments {command}: {problem}", file=sys.stderr)
    return None if problems else kafka


def check_kafka(config: WorkerConfig) -> None:
    """librdkafka's own verdict on the passthrough properties (unknown key, bad value, a file it
    cannot read), now rather than from the first client built later; ConfigError when any."""
    from stream.kafka.clients import kafka_problems

    problems = kafka_problems(config.kafka, is_secret_key)
    if problems:
        raise ConfigError(problems)
