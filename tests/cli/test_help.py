"""Every option and operand of every `segments` command says what it is in --help."""
from __future__ import annotations

import argparse

from stream.cli.main import build_parser


def undocumented(parser: argparse.ArgumentParser, path: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                missing += undocumented(child, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction) and not action.help:
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_option_and_operand_has_help():
    assert undocumented(build_parser(), "segments") == []
