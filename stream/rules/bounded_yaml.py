"""YAML read within limits: the one loader for segments files, definitions and config files.

PyYAML's safe loader is safe from code execution, not from size: an alias (`*name`) stands for a
copy of what its anchor names, so a few hundred bytes of anchors can stand for billions of nodes
("billion laughs"), which the constructor shares but everything after it (the rule compiler, error
messages, JSON encoding) expands; and its composer recurses once per nesting level, so deep nesting
ends in a RecursionError. This loader counts while composing, before anything is built: the
document's bytes, its nesting depth, and its nodes and scalar text with every alias counted as the
copy it stands for. So aliases stay usable, but a document never expands beyond what could have been
written out in full within the same limits. An alias inside its own anchor (a recursive document)
is refused. Every failure is a DocumentError (a ValueError) with a message of bounded length.
"""
from __future__ import annotations

import reprlib
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any, cast

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, Event, NodeEvent, ScalarEvent
from yaml.nodes import Node
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from stream.errors import SegmentsError

KIB = 1024
MIB = 1024 * KIB
MESSAGE_CHARS = 500          # the longest message a DocumentError carries


@dataclass(frozen=True)
class Limits:
    what: str                # the kind of document, for messages: "a segments file"
    syntax: str              # what it is written in, for messages: "YAML", "YAML or JSON"
    bytes: int               # its size in UTF-8
    depth: int               # mappings and lists nested, aliases expanded
    nodes: int               # mappings, lists and scalars, each alias counted as the copy it stands for
    text: int                # characters of scalar text, likewise


SEGMENTS_FILE = Limits("a segments file", "YAML", MIB, 64, 250_000, MIB)
DEFINITION = Limits("a segment definition", "YAML or JSON", 64 * KIB, 64, 16_384, 64 * KIB)
CONFIG_FILE = Limits("a config file", "YAML", MIB, 64, 250_000, MIB)


class DocumentError(SegmentsError, ValueError):
    """A document that is not valid YAML, or over its limits; the message is at most MESSAGE_CHARS.
    One problem, not a list of them (so no errors.Problems): its reader names where it came from."""

    def __init__(self, message: str):
        super().__init__(clip(message, MESSAGE_CHARS))


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 15] + f"... ({len(text):,} chars)"


_brief = reprlib.Repr()
_brief.maxlevel, _brief.maxdict, _brief.maxlist, _brief.maxtuple, _brief.maxset = 2, 4, 4, 4, 4
_brief.maxstring, _brief.maxother, _brief.maxlong = 100, 60, 40


def brief(value: object) -> str:
    """A repr for messages that stays short, and costs little, whatever `value` holds."""
    return clip(_brief.repr(value), 120)


class _OverLimit(yaml.YAMLError):
    pass


class _BoundedComposer(Composer):
    """PyYAML's composer, counting: each node it composes, and for each alias the counts recorded
    for its anchor's node when that node was complete."""

    limits: Limits
    peek_event: Callable[[], Event]       # yaml.parser.Parser's, beside this class in the loader

    def compose_document(self) -> Node | None:
        self._nodes = self._text = self._depth = self._reach = 0
        self._sizes: dict[str, tuple[int, int, int]] = {}     # anchor -> (nodes, text, height)
        return super().compose_document()

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = cast(NodeEvent, self.peek_event())     # the composer composes a node: a node's event is next
        if isinstance(event, AliasEvent):
            self._alias(event)
            return super().compose_node(parent, index)
        start, reach = (self._nodes, self._text), self._reach
        self._depth += 1
        self._nodes += 1
        if self._depth > self.limits.depth:
            self._refuse(event, f"nested more than {self.limits.depth} levels deep")
        if self._nodes > self.limits.nodes:
            self._refuse(event, f"more than {self.limits.nodes:,} nodes")
        if isinstance(event, ScalarEvent):
            self._text += len(event.value)
            if self._text > self.limits.text:
                self._refuse(event, f"more than {self.limits.text:,} characters of text")
        self._reach = self._depth
        node = super().compose_node(parent, index)
        if event.anchor is not None:
            self._sizes[event.anchor] = (self._nodes - start[0], self._text - start[1],
                                         self._reach - self._depth + 1)
        self._reach = max(reach, self._reach)
        self._depth -= 1
        return node

    def _alias(self, event: AliasEvent) -> None:
        anchor = event.anchor
        assert anchor is not None, "an alias names its anchor"
        if anchor not in self._sizes:
            if anchor in self.anchors:
                self._refuse(event, f"alias *{clip(anchor, 40)} is inside its own anchor "
                                    f"(a recursive document)")
            return                       # undefined: the composer says so
        nodes, text, height = self._sizes[anchor]
        self._nodes += nodes
        self._text += text
        self._reach = max(self._reach, self._depth + height)
        where = f"alias *{clip(anchor, 40)} expands to"
        if self._depth + height > self.limits.depth:
            self._refuse(event, f"{where} more than {self.limits.depth} levels of nesting")
        if self._nodes > self.limits.nodes:
            self._refuse(event, f"{where} more than {self.limits.nodes:,} nodes (an alias counts as a copy)")
        if self._text > self.limits.text:
            self._refuse(event, f"{where} more than {self.limits.text:,} characters of text "
                                f"(an alias counts as a copy)")

    def _refuse(self, event: Any, problem: str) -> None:
        mark = event.start_mark
        raise _OverLimit(f"line {mark.line + 1}, column {mark.column + 1}: {problem}")


class _Loader(Reader, Scanner, Parser, _BoundedComposer, SafeConstructor, Resolver):
    def __init__(self, text: str, limits: Limits):
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        _BoundedComposer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.limits = limits


class _TextDatesLoader(_Loader):
    """Dates and timestamps left as text: the rule compiler checks them, with errors that name the
    segment and path (PyYAML's own errors for 1990-13-01 name neither)."""


_TextDatesLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in Resolver.yaml_implicit_resolvers.items()
}


def load(document: str | bytes, limits: Limits, dates_as_text: bool = True) -> Any:
    """One YAML document (JSON is YAML too), safely and within `limits`; DocumentError otherwise."""
    # A string's characters are at most its UTF-8 bytes: a long one is refused without encoding it.
    if len(document) > limits.bytes or (isinstance(document, str)
                                        and len(document.encode("utf-8", "surrogatepass")) > limits.bytes):
        raise _too_large(limits)
    if isinstance(document, bytes):
        try:
            document = document.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DocumentError(f"not valid {limits.syntax}: not UTF-8 (byte 0x{document[exc.start]:02x} "
                                f"at offset {exc.start})") from None
    try:
        return _compose_and_construct(document, limits, dates_as_text)
    except _OverLimit as exc:
        raise DocumentError(f"over the limits of {limits.what}: {exc}") from None
    except (yaml.YAMLError, ValueError) as exc:
        # ValueError: a constructor's, e.g. an integer of more than 4300 digits or 2025-02-30 as a date
        raise DocumentError(f"not valid {limits.syntax}: {exc}") from None


def _compose_and_construct(document: str, limits: Limits, dates_as_text: bool) -> Any:
    loader = (_TextDatesLoader if dates_as_text else _Loader)(document, limits)   # checks the characters
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_file(path: str | Path, limits: Limits, dates_as_text: bool = True) -> Any:
    """A file's one YAML document within `limits`, never reading more than the limit. OSError when
    it cannot be read, DocumentError when it is no good."""
    with open(path, "rb") as handle:
        document = handle.read(limits.bytes + 1)      # one more than allowed is enough to refuse
    return load(document, limits, dates_as_text)


def _too_large(limits: Limits) -> DocumentError:
    return DocumentError(f"over the limits of {limits.what}: larger than {limits.bytes:,} bytes")
