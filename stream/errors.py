"""The product's errors: one root, so a caller (the `segments` command above all) can tell the
product's refusals from bugs, and one shape for "here is every problem found", which definitions,
settings and command arguments all report."""
from __future__ import annotations


class SegmentsError(Exception):
    """Root of every error the product raises on purpose."""


class Problems(SegmentsError, ValueError):
    """Every problem found in one piece of input, each naming where it is (a flag, a file key, a
    segment); `heading` says what the input was. A ValueError too, as these always were."""

    heading = "invalid input"

    def __init__(self, problems: list[str], message: str | None = None):
        self.problems = problems
        super().__init__(message if message is not None else self.listed(problems))

    @classmethod
    def listed(cls, problems: list[str]) -> str:
        return f"{cls.heading}:\n" + "\n".join(f"  - {p}" for p in problems)
