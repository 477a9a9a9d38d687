"""Trainable-parameter report per adapter component, as in the paper's parameter tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ParameterReport:
    """Trainable parameter counts per component and as a percentage of the frozen base model."""

    components: dict[str, int]
    base_parameters: int

    @classmethod
    def from_groups(
        cls, groups: Mapping[str, Sequence[nn.Parameter]], base_parameters: int
    ) -> ParameterReport:
        return cls({name: sum(p.numel() for p in params) for name, params in groups.items()}, base_parameters)

    @property
    def trainable(self) -> int:
        return sum(self.components.values())

    def percent(self, component: str | None = None) -> float:
        """Percent of the base model's parameters; ``None`` gives the total over all components."""
        count = self.trainable if component is None else self.components[component]
        return 100.0 * count / self.base_parameters

    def table(self) -> str:
        rows = [(name, count, f"{self.percent(name):.3f}") for name, count in self.components.items()]
        rows += [
            ("trainable total", self.trainable, f"{self.percent():.3f}"),
            ("base model", self.base_parameters, ""),
        ]
        width = max(len(name) for name, _, _ in rows)
        lines = [f"{'component':<{width}}  {'parameters':>14}  {'% of base':>9}"]
        lines += [f"{name:<{width}}  {count:>14,}  {pct:>9}" for name, count, pct in rows]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()
