"""The comparison's data: one survey split by respondent into train / valid / test and held-out profile cells.

Respondents of the held-out cells are removed first and never trained on; the rest are split at random
(``data.valid_fraction``, ``data.test_fraction``); the "test" split scored is the test respondents, or
the validation respondents with ``data.score_split=valid``. Each split is then sampled to ``data.n_*``
examples, stratified by question. The split and the samples depend on ``data.seed`` only, so every
method and every training seed sees the same examples.

``data.heldout_cells`` maps fields to values; the cells are every combination of them, e.g.
``{race: [black], gender: [female]}`` holds out black women, ``{race: [black, other], gender: [female]}``
two cells.

``data.option_order`` decides the order the options are shown in (`ORDER_PLANS`), after the split and
the samples, which therefore do not depend on it: ``fixed`` shows the survey's order everywhere;
``shuffled`` a seeded permutation per example (`cuma.data.prompt.option_permutation`) in training and
scoring; ``both`` trains shuffled (no position is the answer more often than another, whatever the number
of options) and scores every example in the fixed and in the reversed order (`ComparisonData.score_orders`),
whose predictions `cuma.data.examples.average_orders` averages. The persona and persona-free twin of an
example are shown in the same order, and the survey-derived preference pairs and GRPO prompts
(`cuma.data.preferences`) are built from these examples, so every objective sees one rendering.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cuma.config import DataConfig
from cuma.data.embeddings import attach_embeddings
from cuma.data.examples import SurveyExample, arrange, build_examples, check_arrangeable
from cuma.data.registry import load
from cuma.data.splits import held_out_profile_split, random_split, sample_stratified
from cuma.data.survey import Survey

SPLITS = {"train": "training split", "test": "random test split", "heldout": "held-out profile cells"}
"""The comparison's splits, in order, and how the report names them."""
EVAL_SPLITS = tuple(name for name in SPLITS if name != "train")
"""The scored splits: every method is evaluated on these."""


@dataclass(frozen=True)
class OrderPlan:
    """Where one ``data.option_order`` shows which arrangement (`cuma.data.prompt.ARRANGEMENTS`).

    Attributes:
        train: the training examples' arrangement.
        scored: the arrangements each scored split is scored in; the first is the split's own examples.
    """

    train: str
    scored: tuple[str, ...]


ORDER_PLANS = {
    "fixed": OrderPlan("fixed", ("fixed",)),
    "shuffled": OrderPlan("shuffled", ("shuffled",)),
    "both": OrderPlan("shuffled", ("fixed", "reversed")),
}
"""``data.option_order`` -> its `OrderPlan`."""


@dataclass
class ComparisonData:
    """Sampled examples per split (with the profile in the prompt) and their persona-free twins.

    Attributes:
        survey: the loaded survey.
        splits: "train", "test", "heldout" -> examples whose system prompt carries the profile.
        twins: the same examples with the generic system prompt, keyed by (respondent, question).
        respondents: split name -> respondents available before sampling (valid included).
        cells: the held-out cells, each a field -> value mapping (empty: no zero-shot split).
        option_order: ``data.option_order``: how the options are shown (see the module docstring).
        seed: ``data.seed``, which also seeds the shuffled option orders.
        pool: every training-split answer before sampling (the references may fit on all of it).
        valid: every validation answer, on which the references choose their regularisation; empty when
            the validation respondents are the scored ones (``data.score_split=valid``).
    """

    survey: Survey
    splits: dict[str, list[SurveyExample]]
    twins: dict[tuple[str, str], SurveyExample]
    respondents: dict[str, int]
    cells: list[dict[str, str]]
    option_order: str = "fixed"
    seed: int = 0
    pool: list[SurveyExample] = dataclasses.field(default_factory=list)
    valid: list[SurveyExample] = dataclasses.field(default_factory=list)

    def examples(self, split: str, persona: bool) -> list[SurveyExample]:
        """A split's examples, with or without the profile in the system prompt."""
        rows = self.splits[split]
        return rows if persona else [self.twins[ex.respondent_id, ex.question_id] for ex in rows]

    def score_orders(self, split: str, persona: bool) -> list[list[SurveyExample]]:
        """A scored split's examples in each option order it is scored in: ``examples(split, persona)``, and
        under ``option_order=both`` their reversed-order copies after them. Score each list and join the
        predictions with `cuma.data.examples.average_orders` (one list: its predictions as they are)."""
        rows = self.examples(split, persona)
        others = ORDER_PLANS[self.option_order].scored[1:] if split != "train" else ()
        return [rows, *(arrange(rows, self.survey, name, seed=self.seed, persona=persona) for name in others)]

    def sizes(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.splits.items()}

    def with_embeddings(self, encoder: Any) -> ComparisonData:
        """Copies of every example carrying its profile's encoder vector (each profile encoded once)."""
        keys = [(name, i) for name, rows in self.splits.items() for i in range(len(rows))]
        rows = [self.splits[name][i] for name, i in keys] + list(self.twins.values())
        done = attach_embeddings(rows, encoder)
        splits: dict[str, list[SurveyExample]] = {name: [] for name in self.splits}
        for (name, _), ex in zip(keys, done[: len(keys)], strict=True):
            splits[name].append(ex)
        twins = dict(zip(self.twins, done[len(keys) :], strict=True))
        return dataclasses.replace(self, splits=splits, twins=twins)


def load_survey(dataset: str) -> Survey:
    """A built-in survey name, a survey spec ``.yaml`` or a prepared WorldValuesBench directory.

    A value that looks like a path (a separator, a ``.yaml`` suffix, a leading ``.`` or ``~``) must
    exist: a mistyped path is reported as such, not as an unknown dataset name.
    """
    path = Path(dataset).expanduser()
    is_path = (
        "/" in dataset
        or os.sep in dataset
        or dataset.startswith((".", "~"))
        or path.suffix in (".yaml", ".yml")
    )
    if is_path and not path.exists():
        raise FileNotFoundError(f"data.dataset={dataset!r}: no such file or directory {path.absolute()}")
    data = load("worldvaluesbench", path) if path.is_dir() else load(str(path) if is_path else dataset)
    if not isinstance(data, Survey):
        raise ValueError(f"data.dataset={dataset!r} is not a survey; compare scores multiple-choice surveys")
    return data


def heldout_cells(config: DataConfig) -> list[dict[str, str]]:
    """Every combination of the configured held-out values (see the module docstring)."""
    if not config.heldout_cells:
        return []
    fields = list(config.heldout_cells)
    combos = itertools.product(*(config.heldout_cells[name] for name in fields))
    return [dict(zip(fields, (str(v) for v in combo), strict=True)) for combo in combos]


def prepare_data(config: DataConfig) -> ComparisonData:
    survey = load_survey(config.dataset)
    if config.option_order != "fixed":
        check_arrangeable(survey, f"data.option_order={config.option_order!r}")
    with_persona = build_examples(survey, persona=True)
    cells = heldout_cells(config)
    if cells:
        held = held_out_profile_split(
            with_persona, cells, valid_fraction=0.0, seed=config.seed, source=survey.source
        )
        pool, heldout = held.train, held.test
    else:
        pool, heldout = with_persona, []
    train_fraction = 1.0 - config.valid_fraction - config.test_fraction
    split = random_split(
        pool,
        fractions=(train_fraction, config.valid_fraction, config.test_fraction),
        seed=config.seed,
        source=survey.source,
    )
    sampled = {
        "train": _sample(split.train, config.n_train, config.seed, "train"),
        "test": _sample(split[config.score_split], config.n_test, config.seed, "test"),
        "heldout": _sample(heldout, config.n_heldout, config.seed, "heldout"),
    }
    splits, twins = {}, {}
    plan = ORDER_PLANS[config.option_order]
    for name, rows in sampled.items():
        shown = plan.train if name == "train" else plan.scored[0]
        splits[name] = arrange(rows, survey, shown, seed=config.seed, persona=True)
        for ex in arrange(rows, survey, shown, seed=config.seed, persona=False):
            twins[ex.respondent_id, ex.question_id] = ex
    respondents = {
        "train": len(split.groups["train"]),
        "valid": len(split.groups["valid"]),
        "test": len(split.groups["test"]),
        "heldout": len({ex.respondent_id for ex in heldout}),
    }
    valid = list(split.valid) if config.score_split != "valid" else []
    return ComparisonData(
        survey, splits, twins, respondents, cells, config.option_order, config.seed, list(split.train), valid
    )


def _sample(rows: Sequence[SurveyExample], n: int | None, seed: int, name: str) -> list[SurveyExample]:
    if n is None or not rows:
        return list(rows)
    if n > len(rows):
        raise ValueError(f"data.n_{name}={n} is more than the {len(rows)} {name} examples available")
    return sample_stratified(rows, n, seed=seed, name=f"{name} examples")
