"""A comparison's results as typed records, and the one place that writes and reads results.json.

`MethodRun` is one method and seed (its settings, sizes, timings and metrics per split); `ComparisonResults`
is the whole report: what ran, on which data and machine, every run, the routing topology, the figures,
the paper-style table and the evidence behind its intervals (`cuma.metrics.evidence.Evidence`: every
table metric with its paired-bootstrap interval, the differences against dense LoRA and the majority
with their tests, the proper-score gains over the references, the noise floors).
`ComparisonResults.to_json` / `from_json` (and `read` for a file) are the only code that turns them into
results.json and back (`cuma.compare.report` writes the text with the other report files); the report,
the CLI and the tests read the typed objects.

The file keeps every field under its own name, plus ``aggregate`` (per method: mean and sample std over
seeds of every run number, `aggregate`), which is derived from ``runs`` and so recomputed when a file is
read rather than read back.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cuma.config import ExperimentConfig
from cuma.metrics.evidence import Difference, Evidence, Interval, NoiseFloor, SplitEvidence

RESULTS_FILE = "results.json"
"""The results' file name in a report directory."""

Number = float | int | None
"""A metric or run number; None where it is undefined (e.g. sigma-inequity with one group)."""

RUN_NUMBERS = ("trainable_params", "trainable_pct", "train_seconds", "eval_seconds", "gradient_cosine")
"""The `MethodRun` fields that are numbers averaged over seeds, next to its metrics."""


@dataclass(frozen=True)
class MethodRun:
    """One method trained (if it has weights) with one seed and scored on every evaluation split.

    Attributes:
        method: the method's name (`cuma.methods.METHODS`).
        seed: the training seed (the references' ``random_state``).
        kind: the method's kind: ``prompt``, ``adapter``, ``prefix``, ``full`` or ``reference``.
        adapter_config: the resolved `CuMAConfig` settings of an adapter method (preset with its
            ``adapter_overrides``), else None.
        settings: the build settings of the other methods (prefix settings, the references' fit settings
            and fields); empty for adapters and prompting.
        persona_in_prompt: whether the method's prompts carry the profile; None for the references.
        uses_demographics: whether it routes on the profile embedding; None for the references.
        trainable_params: trainable parameter count; None for the references.
        trainable_pct: those as a percentage of the base model; None for the references.
        train_seconds: training wall time (0 without weights to train); None for the references.
        eval_seconds: scoring (or fitting and predicting) wall time.
        metrics: split -> `cuma.metrics.summarize` of its predictions.
        tables: kind -> split -> path of its per-question CSV, relative to the report directory
            (`cuma.compare.tables`); empty until they are written.
        training: for trained methods, what the run did: ``objective``, ``started_from`` (the model
            ``train.init_from`` named, or None), ``steps``, ``final_loss``, ``model_dir``, and for a resumed
            run the ``changed_on_resume`` settings (setting -> [checkpoint, now]) and the
            ``skipped_checkpoints`` (corrupt or incomplete ones passed over); empty otherwise.
        data_seed: the ``data.seed`` of the split and samples it was trained and scored on.
        gradient_cosine: the mean off-diagonal cosine of the main group's answer-loss gradients in the
            trained adapter (`cuma.evaluation.interference`; ``eval.interference_examples``), else None.
    """

    method: str
    seed: int
    kind: str
    adapter_config: dict[str, Any] | None
    settings: dict[str, Any]
    persona_in_prompt: bool | None
    uses_demographics: bool | None
    trainable_params: int | None
    trainable_pct: float | None
    train_seconds: float | None
    eval_seconds: float
    metrics: dict[str, dict[str, Number]]
    tables: dict[str, dict[str, str]] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    data_seed: int = 0
    gradient_cosine: float | None = None

    def to_json(self) -> str:
        return json.dumps(_jsonable(dataclasses.asdict(self)), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> MethodRun:
        """Parse what `to_json` wrote; errors name ``source``."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}: not JSON ({err})") from None
        return _build(cls, raw, source)

    def numbers(self) -> dict[str, Number]:
        """The run's numbers by table key: the `RUN_NUMBERS` fields and ``split.metric``."""
        flat: dict[str, Number] = {key: getattr(self, key) for key in RUN_NUMBERS}
        for split, metrics in self.metrics.items():
            flat |= {f"{split}.{key}": value for key, value in metrics.items()}
        return {key: value for key, value in flat.items() if value is None or isinstance(value, int | float)}


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation over seeds; None where undefined (std with one seed)."""

    mean: float | None
    std: float | None


@dataclass(frozen=True)
class MethodSummary:
    """A method's runs over seeds: ``stats`` maps each `MethodRun.numbers` key to its `Stat`."""

    kind: str
    seeds: list[int]
    stats: dict[str, Stat]


@dataclass(frozen=True)
class ResultsTable:
    """The paper-style table as cell strings, as report.md, report.html and the CLI show it."""

    columns: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Figure:
    """A figure of the report: its title and PNG file, relative to the report directory."""

    title: str
    file: str


@dataclass(frozen=True)
class Topology:
    """A routed method's routing topology on the first seed (`cuma.compare.figures`).

    Attributes:
        routers: the layers whose routing was recorded.
        experts: experts per router.
        mean_weight: ``field=group`` -> mean routing weight per expert, averaged over routers.
        projection: one record per group: ``field, group, n, pc1, pc2`` (PCA of the mean routing vectors).
        explained_variance: share of the between-group variance of the two components.
    """

    routers: list[str]
    experts: int
    mean_weight: dict[str, list[float]]
    projection: list[dict[str, Any]]
    explained_variance: list[float]


@dataclass(frozen=True)
class DataSummary:
    """The survey and the comparison's sample of it.

    Attributes:
        dataset: ``data.dataset``.
        survey_answers, survey_respondents, n_questions: the whole survey's size.
        sizes: split -> sampled answers.
        respondents: split -> respondents available before sampling.
        heldout_cells: the held-out profile cells (field -> value each).
        group_fields, main_group, cell_fields: the profile fields of the metrics and the cell majority.
        max_length: ``data.max_length``.
        longest_prompt, mean_prompt: prompt lengths in tokens (persona prompts, every split).
    """

    dataset: str
    survey_answers: int
    survey_respondents: int
    n_questions: int
    sizes: dict[str, int]
    respondents: dict[str, int]
    heldout_cells: list[dict[str, Any]]
    group_fields: list[str]
    main_group: str
    cell_fields: list[str]
    max_length: int | None
    longest_prompt: int
    mean_prompt: float


@dataclass(frozen=True)
class Machine:
    """Where the comparison ran (`cuma.compare.environment.machine`)."""

    platform: str
    processor: str
    cpu_count: int | None
    torch_threads: int
    cuda: str | None
    processes: int
    memory_gib: float | None = None


@dataclass(frozen=True)
class ComparisonResults:
    """Everything a comparison's report shows.

    Attributes:
        title: the report's title.
        created: UTC time the report was written (ISO 8601).
        command: the command line that ran it.
        quick: a ``--quick`` run (its numbers are a smoke test).
        config: the experiment's config.
        versions: package -> version.
        machine: where it ran.
        data: the survey and its sample.
        timings: stage -> seconds.
        runs: every method and seed, in run order.
        topology: routed method -> its routing topology.
        figures: the report's figures, in report order.
        table: the paper-style table (`cuma.compare.report.build_table` of `aggregate` and ``evidence``).
        evidence: intervals, paired differences, tests and noise floors; None in a report written
            without them (the table then shows mean ± std over seeds).
    """

    title: str
    created: str
    command: str
    quick: bool
    config: ExperimentConfig
    versions: dict[str, str]
    machine: Machine
    data: DataSummary
    timings: dict[str, float]
    runs: list[MethodRun]
    topology: dict[str, Topology]
    figures: list[Figure]
    table: ResultsTable
    evidence: Evidence | None = None

    def aggregate(self) -> dict[str, MethodSummary]:
        return aggregate(self.runs)

    def to_json(self) -> str:
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        record["config"] = self.config.to_dict()
        record["aggregate"] = self.aggregate()
        return json.dumps(_jsonable(record), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = RESULTS_FILE) -> ComparisonResults:
        """Parse what `to_json` wrote; errors name ``source`` and the key path of the bad entry."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}: not JSON ({err})") from None
        if isinstance(raw, dict):
            raw = {key: value for key, value in raw.items() if key != "aggregate"}
        return _build(
            cls,
            raw,
            source,
            config=lambda value, where: ExperimentConfig.from_dict(value, source=where),
            machine=lambda value, where: _build(Machine, value, where),
            data=lambda value, where: _build(DataSummary, value, where),
            runs=lambda value, where: [_build(MethodRun, v, w) for v, w in _items(value, where)],
            topology=lambda value, where: {
                key: _build(Topology, v, f"{where}.{key}") for key, v in _entries(value, where)
            },
            figures=lambda value, where: [_build(Figure, v, w) for v, w in _items(value, where)],
            table=lambda value, where: _build(ResultsTable, value, where),
            evidence=lambda value, where: None if value is None else _evidence(value, where),
        )

    @classmethod
    def read(cls, path: Path) -> ComparisonResults:
        return cls.from_json(path.read_text(encoding="utf-8"), str(path))


def aggregate(runs: Sequence[MethodRun]) -> dict[str, MethodSummary]:
    """Per method, in run order: mean and sample std (None for one seed) of every run number over seeds."""
    result: dict[str, MethodSummary] = {}
    for method in dict.fromkeys(run.method for run in runs):
        mine = [run for run in runs if run.method == method]
        values: dict[str, list[Number]] = {}
        for run in mine:
            for key, value in run.numbers().items():
                values.setdefault(key, []).append(value)
        stats = {key: _mean_std(vals) for key, vals in values.items()}
        result[method] = MethodSummary(mine[0].kind, [run.seed for run in mine], stats)
    return result


def _mean_std(values: Sequence[Number]) -> Stat:
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return Stat(None, None)
    return Stat(float(np.mean(finite)), float(np.std(finite, ddof=1)) if len(finite) > 1 else None)


def _build(cls: type, raw: Any, where: str, **convert: Callable[[Any, str], Any]) -> Any:
    """``cls(**raw)`` once ``raw`` is an object with exactly ``cls``'s fields (those with defaults may be
    absent); ``convert`` turns the named fields into their typed values."""
    if not isinstance(raw, dict):
        raise ValueError(
            f"{where}: expected an object with {cls.__name__}'s fields, got {type(raw).__name__}"
        )
    fields = dataclasses.fields(cls)
    required = {
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing, unknown = sorted(required - raw.keys()), sorted(raw.keys() - {f.name for f in fields})
    problems = [f"lacks {key!r}" for key in missing] + [f"has unknown key {key!r}" for key in unknown]
    if problems:
        raise ValueError(f"{where}: the {cls.__name__} entry {', '.join(problems)}")
    return cls(**{key: convert[key](v, f"{where}.{key}") if key in convert else v for key, v in raw.items()})


def _evidence(raw: Any, where: str) -> Evidence:
    def split(value: Any, at: str) -> SplitEvidence:
        return _build(
            SplitEvidence,
            value,
            at,
            values=lambda v, w: _nested(v, w, 2, Interval),
            differences=lambda v, w: _nested(v, w, 3, Difference),
            gains=lambda v, w: _nested(v, w, 3, Difference),
            floors=lambda v, w: _nested(v, w, 1, NoiseFloor),
        )

    return _build(Evidence, raw, where, splits=lambda value, at: _nested(value, at, 1, split))


def _nested(value: Any, where: str, depth: int, leaf: type | Callable[[Any, str], Any]) -> Any:
    """``depth`` levels of objects keyed by name whose leaves are ``leaf`` entries (a dataclass, or a
    function of the raw value and its key path)."""
    if depth == 0:
        return leaf(value, where) if not isinstance(leaf, type) else _build(leaf, value, where)
    return {key: _nested(v, f"{where}.{key}", depth - 1, leaf) for key, v in _entries(value, where)}


def _items(value: Any, where: str) -> list[tuple[Any, str]]:
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
    return [(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _entries(value: Any, where: str) -> list[tuple[str, Any]]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected an object, got {type(value).__name__}")
    return list(value.items())


def _jsonable(value: Any) -> Any:
    """JSON's view of a value: dataclasses as objects, NumPy scalars as numbers, NaN/inf as null."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
