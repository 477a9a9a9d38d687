"""Splits by group (respondent, conversation or annotator) so that no group is in two splits.

A group's place in the shuffled order depends only on its id and the seed (a keyed hash), so
the same seed splits the SFT rows, DPO pairs and choice sets of one dataset the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

import numpy as np

from cuma.data.errors import DataError
from cuma.data.survey import Survey

T = TypeVar("T")
SPLIT_PARTS = ("train", "valid", "test")
"""The three parts of every `Split`, in order (the comparison's splits are `cuma.data.experiment.SPLITS`)."""


@dataclass
class Split(Generic[T]):
    """Train, valid and test items plus the group ids (and question ids) each split owns.

    Attributes:
        train, valid, test: the items.
        key: the attribute that groups items (``respondent_id``, ``conversation_id``, ...).
        groups: split name -> group ids assigned to it.
        questions: split name -> question ids allowed in it (held-out-question splits only).
    """

    train: list[T]
    valid: list[T]
    test: list[T]
    key: str
    groups: dict[str, frozenset[str]]
    questions: dict[str, frozenset[str]] | None = field(default=None)

    def __getitem__(self, name: str) -> list[T]:
        return {"train": self.train, "valid": self.valid, "test": self.test}[name]

    def sizes(self) -> dict[str, int]:
        return {name: len(self[name]) for name in SPLIT_PARTS}

    def apply(self, items: Iterable[Any]) -> Split[Any]:
        """Split other items of the same groups (e.g. DPO pairs after SFT rows) the same way."""
        owner = {gid: name for name, ids in self.groups.items() for gid in ids}
        parts: dict[str, list[Any]] = {name: [] for name in SPLIT_PARTS}
        for item in items:
            gid = str(getattr(item, self.key))
            if gid not in owner:
                raise DataError(f"item of a {self.key} that this split never saw", column=self.key, value=gid)
            name = owner[gid]
            if self.questions is None or item.question_id in self.questions[name]:
                parts[name].append(item)
        return Split(**parts, key=self.key, groups=self.groups, questions=self.questions)

    def sample(self, sizes: Mapping[str, int], *, seed: int = 0, by: str = "question_id") -> Split[T]:
        """Reduce each named split to a number of items, stratified by ``by`` (see `sample_stratified`)."""
        parts = {name: list(self[name]) for name in SPLIT_PARTS}
        for name, n in sizes.items():
            parts[name] = sample_stratified(parts[name], n, seed=seed, by=by, name=name)
        return Split(**parts, key=self.key, groups=self.groups, questions=self.questions)


def _order(ids: Iterable[str], seed: int) -> list[str]:
    def rank(gid: str) -> bytes:
        return hashlib.blake2b(f"{seed}\x00{gid}".encode(), digest_size=16).digest()

    return sorted(set(ids), key=lambda gid: (rank(gid), gid))


def assign_groups(ids: Iterable[str], fractions: Sequence[float], seed: int) -> dict[str, frozenset[str]]:
    """Split name -> group ids: the distinct ``ids`` in seeded-hash order, cut at ``fractions``."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    order = _order(ids, seed)
    n_train = round(fractions[0] * len(order))
    n_valid = round(fractions[1] * len(order))
    cuts = {"train": order[:n_train], "valid": order[n_train : n_train + n_valid]}
    cuts["test"] = order[n_train + n_valid :]
    return {name: frozenset(part) for name, part in cuts.items()}


def _assemble(
    items: Sequence[T],
    key: str,
    groups: dict[str, frozenset[str]],
    what: str,
    source: object,
    questions: dict[str, frozenset[str]] | None = None,
    required: Iterable[str] = SPLIT_PARTS,
) -> Split[T]:
    split = Split[T]([], [], [], key=key, groups=groups, questions=questions).apply(items)
    for name in required:
        if not split[name]:
            raise DataError(
                f"the {name} split is empty after {what} ({len(items)} items)", source=source, column=key
            )
    return split


def random_split(
    items: Sequence[T],
    *,
    key: str = "respondent_id",
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    source: object = None,
) -> Split[T]:
    """Random train/valid/test split of the groups named by ``key``; a split with fraction 0 may be empty.

    ``source`` (e.g. ``survey.source``) names the dataset in errors, here and in the other splits.
    """
    groups = assign_groups([str(getattr(item, key)) for item in items], fractions, seed)
    required = [name for name, f in zip(SPLIT_PARTS, fractions, strict=True) if f > 0]
    return _assemble(items, key, groups, f"a random split by {key}", source, required=required)


def _matches(profile: Mapping[str, Any], cell: Mapping[str, Any]) -> bool:
    return all(profile.get(name) == str(value) for name, value in cell.items())


def held_out_profile_split(
    items: Sequence[T],
    cells: Sequence[Mapping[str, Any]],
    *,
    valid_fraction: float = 0.1,
    seed: int = 0,
    key: str = "respondent_id",
    source: object = None,
) -> Split[T]:
    """Every group whose profile matches one of ``cells`` goes to test; the rest to train/valid.

    A cell is a mapping of profile fields to values (e.g. ``{"country": "Norway", "gender":
    "female"}``), so the test split holds demographic cells never seen in training: the
    paper's zero-shot evaluation.
    """
    if not cells:
        raise ValueError("held_out_profile_split needs at least one cell")
    fields = {name for item in items for name in item.profile}
    profile_of = {str(getattr(item, key)): item.profile for item in items}
    for cell in cells:
        unknown = sorted(set(cell) - fields)
        if unknown:
            raise DataError(
                f"held-out cell names unknown profile fields; known: {sorted(fields)}",
                source=source,
                column=unknown[0],
                value=dict(cell),
            )
        if not any(_matches(p, cell) for p in profile_of.values()):
            raise DataError("held-out cell matches no respondent", source=source, value=dict(cell))
    held = frozenset(gid for gid, p in profile_of.items() if any(_matches(p, cell) for cell in cells))
    rest = assign_groups(
        [gid for gid in profile_of if gid not in held], (1 - valid_fraction, valid_fraction, 0), seed
    )
    groups = {"train": rest["train"], "valid": rest["valid"], "test": held}
    required = ["train", "test"] + (["valid"] if valid_fraction > 0 else [])
    return _assemble(items, key, groups, "holding out the profile cells", source, required=required)


def pick_cells(
    items: Sequence[Any],
    fields: Sequence[str],
    n: int,
    *,
    seed: int = 0,
    min_groups: int = 1,
    key: str = "respondent_id",
) -> list[dict[str, str]]:
    """Choose ``n`` random cells (value combinations of ``fields``) with at least ``min_groups`` members."""
    members: dict[tuple[str | None, ...], set[str]] = {}
    for item in items:
        values = tuple(item.profile.get(name) for name in fields)
        if None not in values:
            members.setdefault(values, set()).add(str(getattr(item, key)))
    eligible = sorted(cell for cell, ids in members.items() if len(ids) >= min_groups)
    if len(eligible) < n:
        raise DataError(f"only {len(eligible)} cells of {list(fields)} have {min_groups}+ members", value=n)
    chosen = np.random.default_rng(seed).choice(len(eligible), size=n, replace=False)
    return [dict(zip(fields, eligible[i], strict=True)) for i in sorted(chosen)]


def held_out_question_split(
    items: Sequence[T],
    questions: Sequence[str],
    *,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    key: str = "respondent_id",
    source: object = None,
) -> Split[T]:
    """Test = test respondents on the held-out ``questions``; train/valid = other respondents on the rest.

    ``fractions`` split the respondents into train/valid/test; a valid fraction of 0 leaves valid empty.

    Respondents are split as in `random_split`, so no person is in two splits either.
    """
    known = {item.question_id for item in items}
    unknown = sorted(set(questions) - known)
    if unknown:
        raise DataError(
            "held-out question not in the data", source=source, column="question_id", value=unknown[0]
        )
    held = frozenset(questions)
    seen = frozenset(known - held)
    groups = assign_groups([str(getattr(item, key)) for item in items], fractions, seed)
    questions_of = {"train": seen, "valid": seen, "test": held}
    required = ["train", "test"] + (["valid"] if fractions[1] > 0 else [])
    return _assemble(
        items, key, groups, "holding out questions", source, questions=questions_of, required=required
    )


def _quotas(sizes: Mapping[Any, int], n: int) -> dict[Any, int]:
    """Split ``n`` as evenly as possible over strata of the given sizes (surplus of small ones spread)."""
    quota = dict.fromkeys(sizes, 0)
    left, open_ = n, sorted(sizes, key=str)
    while left and open_:
        share = max(left // len(open_), 1)
        for s in list(open_):
            take = min(share, sizes[s] - quota[s], left)
            quota[s] += take
            left -= take
            if quota[s] == sizes[s]:
                open_.remove(s)
            if not left:
                break
    return quota


def _draw(
    strata: Mapping[Any, Sequence[int]], n: int, seed: int, what: str, source: object = None
) -> np.ndarray:
    """Sorted positions of ``n`` items spread over the strata by `_quotas`, drawn reproducibly."""
    total = sum(len(rows) for rows in strata.values())
    if n > total:
        raise DataError(f"cannot sample {n} {what} from {total}", source=source, value=n)
    quota = _quotas({s: len(rows) for s, rows in strata.items()}, n)
    rng = np.random.default_rng(seed)
    chosen = [i for s in sorted(strata, key=str) for i in rng.choice(strata[s], size=quota[s], replace=False)]
    return np.sort(np.asarray(chosen, dtype=np.int64))


def sample_stratified(
    items: Sequence[T],
    n: int,
    *,
    seed: int = 0,
    by: str | Callable[[T], Any] = "question_id",
    name: str = "items",
) -> list[T]:
    """``n`` items spread as evenly as possible over the strata (questions by default), reproducibly.

    Each stratum gets an equal share; strata with fewer items give their surplus to the others.
    The result keeps the input order.
    """
    stratum = by if callable(by) else (lambda item: getattr(item, by))
    strata: dict[Any, list[int]] = {}
    for i, item in enumerate(items):
        strata.setdefault(stratum(item), []).append(i)
    return [items[i] for i in _draw(strata, n, seed, name)]


def sample_answers(survey: Survey, n: int, *, seed: int = 0) -> Survey:
    """The survey with ``n`` of its answers, stratified by question: sample *before* building examples
    when the survey is large (WorldValuesBench has 21M answers; the paper trains on 50k)."""
    answers = survey.answers
    chosen = _draw(answers.groupby("question_id").indices, n, seed, "answers", survey.source)
    kept = answers.iloc[chosen].reset_index(drop=True)
    people = set(kept["respondent_id"])
    respondents = {rid: p for rid, p in survey.respondents.items() if rid in people}
    return replace(survey, answers=kept, respondents=respondents)
