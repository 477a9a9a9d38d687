"""What a loader read, kept and dropped, and why: nothing is dropped without being counted."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class Tally:
    """Counts for one kind of unit (respondents, answers, conversations, turns...).

    Attributes:
        read, kept: how many were read and kept.
        dropped: reason -> count of the units dropped for it.
        notes: reason -> count of kept units that were changed on the way (e.g. conversations
            cut short at an unusable turn).
    """

    read: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)


@dataclass
class LoadSummary:
    """Per unit, how many were read, kept and dropped, with a count per reason for dropping.

    Attributes:
        source: the file, directory or hub id that was read.
        units: unit name -> its `Tally`, in the order they were added.
    """

    source: str
    units: dict[str, Tally] = field(default_factory=dict)

    def add(
        self,
        unit: str,
        read: int,
        kept: int,
        dropped: Mapping[str, int] | None = None,
        notes: Mapping[str, int] | None = None,
    ) -> None:
        """Record a unit; the counts must add up, so a loader cannot lose rows unnoticed."""
        dropped = {reason: int(n) for reason, n in (dropped or {}).items() if n}
        notes = {reason: int(n) for reason, n in (notes or {}).items() if n}
        if read != kept + sum(dropped.values()) or any(n > kept for n in notes.values()):
            raise RuntimeError(
                f"{self.source}: {unit}: read {read} != kept {kept} + dropped {dropped}, or notes {notes} "
                "count more than were kept"
            )
        self.units[unit] = Tally(int(read), int(kept), dropped, notes)

    def __str__(self) -> str:
        lines = [f"source: {self.source}"]
        for unit, tally in self.units.items():
            lines.append(f"{unit}: read {tally.read}, kept {tally.kept}, dropped {tally.read - tally.kept}")
            lines += [f"  - {reason}: {n}" for reason, n in tally.dropped.items()]
            lines += [f"  kept, but {reason}: {n}" for reason, n in tally.notes.items()]
        return "\n".join(lines)
