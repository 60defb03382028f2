"""What a definition's errors say: every problem found in a segments file, each naming its segment
and where in it, listed within bounds."""
from __future__ import annotations

from collections.abc import Iterable

from stream.errors import Problems
from stream.rules.bounded_yaml import brief, clip

# Bounds on what an error says, so a hostile document cannot make a huge message, log line or
# GET /definitions answer: problems listed, and characters per problem.
MAX_PROBLEMS_SHOWN = 20
PROBLEM_CHARS = 500


class DefinitionError(Problems):
    """Every problem found in a segments file, each naming its segment and where in it; the
    message lists at most MAX_PROBLEMS_SHOWN of them, each at most PROBLEM_CHARS long."""

    heading = "invalid segment definitions"

    def __init__(self, problems: list[str]):
        super().__init__(problems, message=self.listed(shown(problems)))


def shown(problems: list[str] | tuple[str, ...]) -> list[str]:
    """The problems as reported: the first MAX_PROBLEMS_SHOWN, clipped, and how many more."""
    listed = [clip(p, PROBLEM_CHARS) for p in problems[:MAX_PROBLEMS_SHOWN]]
    if len(problems) > MAX_PROBLEMS_SHOWN:
        listed.append(f"... and {len(problems) - MAX_PROBLEMS_SHOWN:,} more problems")
    return listed


def key_names(keys: Iterable[object]) -> str:
    """Keys of a mapping for a message: a few, each short."""
    names = sorted(clip(k, 40) if isinstance(k, str) else brief(k) for k in keys)
    return ", ".join(names[:10]) + (f" (and {len(names) - 10:,} more)" if len(names) > 10 else "")
