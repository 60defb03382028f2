"""What a change of segment definitions asks of the customers already stored: which segments to
re-evaluate and which to leave. Computed by stream.definitions from two catalogs, carried out per
customer by Engine.reevaluate; its own module so that the definitions side reads the difference
between catalogs without importing the engine."""
from __future__ import annotations

from dataclasses import dataclass

from stream.rules.catalog import Catalog


@dataclass(frozen=True)
class Redefinition:
    """What a catalog change asks of every stored customer: segment name -> the version its moves
    carry, None for a segment (added or changed) evaluated under the running catalog, or the last
    version of a removed segment, whose members all exit."""
    segments: dict[str, int | None]

    @staticmethod
    def between(old: Catalog, new: Catalog) -> Redefinition:
        """The segments whose definition or version differ, added and removed ones included, and
        those reading a trait that aggregates something else now (stream.rules.traits.Trait.key),
        and those reading rfm.* when the rfm section scores differently now (new cut points); and
        the segments referencing any of them (`segment:`), which may move with them."""
        changed: dict[str, int | None] = {}
        for name in sorted(old.by_name.keys() | new.by_name.keys()):
            before, after = old.by_name.get(name), new.by_name.get(name)
            if after is None:
                changed[name] = old.by_name[name].version
            elif before is None or (before.version, before.definition) != (after.version, after.definition) \
                    or any(changed_trait(old, new, trait) for trait in after.traits) \
                    or (after.rfm and changed_rfm(old, new)):
                changed[name] = None
        for name in list(changed):
            for dependant in new.dependants.get(name, ()):
                changed.setdefault(dependant.name, None)
        return Redefinition(dict(sorted(changed.items())))

    def then(self, later: Redefinition) -> Redefinition:
        """Both passes in one (a change that arrives while an earlier one is under way): a segment
        re-added after its removal is evaluated, one removed after its change exits."""
        return Redefinition(dict(sorted({**self.segments, **later.segments}.items())))


def changed_trait(old: Catalog, new: Catalog, name: str) -> bool:
    """Whether trait `name` of `new` aggregates something `old` did not (added, or redefined)."""
    before, after = old.traits.get(name), new.traits.get(name)
    return after is not None and (before is None or before.key != after.key)


def changed_rfm(old: Catalog, new: Catalog) -> bool:
    """Whether the rfm section of `new` scores differently from `old`'s (stream.rules.rfm.Rfm.key)."""
    before, after = old.rfm, new.rfm
    return (before.key if before is not None else None) != (after.key if after is not None else None)
