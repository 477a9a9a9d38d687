"""Multiple-choice scoring: one forward pass per prompt gives a probability over that question's options.

The prompt ends where the assistant's answer letter would start. The logits of the option letters' tokens
at that *answer position* are renormalised with a softmax over those letters only; the argmax is the
prediction. Only the answer position is projected onto the vocabulary (``logits_to_keep`` with one
position per row), so scoring costs one body pass and a [batch, hidden] x [hidden, vocab] product.

Batches come from `cuma.data.collate.PromptCollator`: padding on either side, position ids from the
attention mask (a padded row sees exactly the positions it would see alone), the answer positions, the
option letters' token ids and the demographic vectors. Reading the answer position of every row, not the
last column of a batch whatever its padding, differs from the authors' code; see docs/design.md.

Two things cut the work without changing a probability beyond float rounding. Prompts are batched by
length (longest first, the predictions keep the examples' order), so little padding is computed. And
prompts that share their first tokens and their demographic vector (a respondent's questions share
the profile in the system prompt; without a persona, every prompt shares the system prompt) run that
shared *prefix* once: its key/value cache is reused by each prompt's remaining tokens. This is exact
for a causal LM, and for a CuMA adapter too, whose routing is per token from that token's hidden state
and the row's profile vector, so a prefix token never depends on the tokens after it. It is skipped,
and the reason recorded, for prefix tuning (which feeds its own prefix through the cache), for routing
averaged over the whole prompt, and for a model that does not fill a plain key/value cache.

Under several processes (``torchrun``, ``accelerate launch``; ``split=True``) every process plans the
same batches, scores every process-count-th of them and the scores are gathered, so each process ends
with every prediction, in the examples' order, exactly as one process computes it: a batch's numbers
depend on the rows it holds and their padding, and a batch is never recomposed. A prefix group stays in
one batch plan (its prefix runs again on any process that scores a part of it). A sharded model (FSDP,
ZeRO-3) needs every process for every forward, so it is never split: each process scores all prompts.

The model is called the way the trainer calls a method, ``model(input_ids, attention_mask,
demographic_embeds=..., position_ids=..., logits_to_keep=...)``: a `cuma.methods.PreparedModel` as it
is, any other causal LM (a bare Hugging Face model, a PEFT or CuMA model: the server's and the tests')
through `method_call`, which maps that call onto Hugging Face's keywords. Accepting either keeps one
scoring path for the comparison, the server and the tests without making every caller build a
`PreparedModel` (which needs a method spec and a base identity that a bare model does not have). The
prefix pass needs a ``cache`` argument that the `PreparedModel` call does not have, so it calls the
model the `PreparedModel` wraps the same way (`cache_call`).
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from cuma.data.collate import (
    EncodedPrompt,
    PromptCollator,
    answer_positions_from_mask,
    pad_token_rows,
    position_ids_from_mask,
)
from cuma.data.examples import SurveyExample, examples_frame
from cuma.evaluation.topology import RoutingCollector
from cuma.methods import PreparedModel
from cuma.metrics import make_predictions
from cuma.precision import resolve_precision
from cuma.processes import gather_objects, is_sharded, process_state

MIN_SHARED_PREFIX = 8
"""Fewest shared prompt tokens worth a prefix pass of their own."""
SCORING_ATTR = "scoring"
"""Key of the `ScoringRecord` (as a dict) in the predictions' ``DataFrame.attrs``."""

logger = logging.getLogger("cuma.evaluation")


@dataclass(frozen=True)
class PrefixGroup:
    """Prompts that share their first ``length`` tokens and their demographic vector: one prefix pass.

    Attributes:
        length: shared tokens, always fewer than the shortest prompt's (its answer position stays out).
        rows: the prompts' indices in the scored examples.
    """

    length: int
    rows: tuple[int, ...]


@dataclass(frozen=True)
class Batch:
    """One batch of the scoring plan: ``rows`` (indices in the scored examples), scored whole, or, when
    ``chunk`` is set, on the prefixes of that chunk of groups; ``groups`` gives each row's group there."""

    rows: tuple[int, ...]
    chunk: int | None = None
    groups: tuple[int, ...] = ()


@dataclass(frozen=True)
class ScoringRecord:
    """How one `score_examples` call ran, for the report (``predictions.attrs["scoring"]``).

    Attributes:
        precision: the precision scored in (`cuma.precision.resolve_precision` of ``eval.precision``).
        precision_reason: why.
        prefix_cache: whether shared prompt prefixes were run once and their key/value cache reused.
        prefix_reason: why (or why not).
        cached_prompts: prompts scored on a reused prefix.
        prompt_tokens: tokens of all prompts.
        computed_tokens: tokens run through the model (prompt tokens minus the reused prefixes').
    """

    precision: str
    precision_reason: str
    prefix_cache: bool
    prefix_reason: str
    cached_prompts: int
    prompt_tokens: int
    computed_tokens: int


class CacheUnavailable(Exception):
    """The model cannot reuse a prefix's key/value cache; scoring falls back to one pass per prompt."""


def score_examples(
    model: nn.Module,
    tokenizer: Any,
    examples: Sequence[SurveyExample],
    *,
    use_embeddings: bool = False,
    max_length: int | None = None,
    batch_size: int = 32,
    padding_side: str = "left",
    precision: str = "auto",
    routing: RoutingCollector | None = None,
    reuse_prefix: bool = True,
    split: bool = False,
    desc: str = "scoring",
) -> pd.DataFrame:
    """Score every example and return the predictions DataFrame (`cuma.metrics.frame.PREDICTIONS_SCHEMA`),
    with how it ran in ``attrs["scoring"]`` (a `ScoringRecord` as a dict).

    Every prompt is rendered and checked before the first forward pass. Prompts on a shared prefix run
    first, group by group; the others are batched longest first: similar lengths share a batch (less
    padding) and memory peaks on the first batch.

    Args:
        model: a `PreparedModel`, or any causal LM returning ``.logits`` (see the module docstring).
        tokenizer: the model's tokenizer, with a chat template and a pad token.
        examples: multiple-choice examples; their order is the predictions' order.
        use_embeddings: pass each example's ``embedding`` (the frozen encoder vector) as its row of
            ``demographic_embeds``; every example must have one.
        max_length: a longer prompt is an error instead of a silent truncation.
        padding_side: ``"left"`` or ``"right"``; both give the same numbers.
        precision: ``auto`` (fp32), ``fp32``, or ``bf16`` for bf16 autocast (`cuma.precision`).
        routing: when given, the answer positions' routing weights of each batch are recorded (under
            ``model.record_routing()``) and added to it.
        reuse_prefix: run each shared prompt prefix once and reuse its key/value cache (see the module
            docstring); the probabilities are those of plain scoring up to float rounding.
        split: share the batches out over the run's processes (`cuma.processes.process_state`) and gather
            the scores (see the module docstring); every process must call it and gets every prediction.
        desc: the progress bar's label.
    """
    if not examples:
        raise ValueError(f"{desc}: no examples to score")
    collator = PromptCollator(
        tokenizer, padding_side=padding_side, max_length=max_length, demographics=use_embeddings
    )
    rows = [collator.encode(ex) for ex in tqdm(examples, desc="rendering", leave=False)]
    for ex, row in zip(examples, rows, strict=True):
        if row.option_token_ids is None:
            raise ValueError(
                f"respondent {ex.respondent_id!r}, question {ex.question_id!r}: no option letters to score"
            )
    device = next(model.parameters()).device
    resolved = resolve_precision(precision, "eval", device.type)
    cached = cache_call(model)
    reason = _prefix_obstacle(cached, routing, reuse_prefix)
    groups = [] if reason else plan_prefix_groups(rows, use_embeddings)
    share = _share(model, desc) if split else (0, 1)
    runner = partial(_score_share, model, collator, rows, batch_size, routing, share, desc)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), _autocast(device, resolved.name):
            probs, failed = runner(groups)
            if failed is not None:  # this model fills no plain cache: score every prompt whole instead
                groups, reason = [], failed
                probs, _ = runner(groups)
    finally:
        model.train(was_training)
    record = _record(resolved, rows, groups, reason)
    logger.info("%s: %s", desc, record)
    frame = make_predictions(examples_frame(examples), probs)
    frame.attrs[SCORING_ATTR] = asdict(record)
    return frame


def plan_prefix_groups(rows: Sequence[EncodedPrompt], use_embeddings: bool) -> list[PrefixGroup]:
    """Groups of two or more prompts sharing at least `MIN_SHARED_PREFIX` tokens and their demographic
    vector (when it is passed); prompts in no group are scored whole.

    Among prompts with the same vector, either all share one prefix (the system prompt, without a
    persona) or each respondent's prompts share theirs (the profile), whichever computes fewer tokens.
    """
    by_vector: dict[Any, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_vector[_vector_key(row.example) if use_embeddings else None].append(i)
    groups: list[PrefixGroup] = []
    for members in by_vector.values():
        by_respondent: dict[Any, list[int]] = defaultdict(list)
        for i in members:
            by_respondent[rows[i].example.respondent_id].append(i)
        together = _groups([members], rows)
        apart = _groups(by_respondent.values(), rows)
        groups += max(together, apart, key=_saved_tokens)
    return groups


def _groups(candidates: Any, rows: Sequence[EncodedPrompt]) -> list[PrefixGroup]:
    found = []
    for members in candidates:
        length = _shared_length([rows[i].input_ids for i in members]) if len(members) > 1 else 0
        if length >= MIN_SHARED_PREFIX:
            found.append(PrefixGroup(length, tuple(members)))
    return found


def _shared_length(sequences: Sequence[Sequence[int]]) -> int:
    """Tokens every sequence starts with, short of the shortest one's last token (its answer position)."""
    first = sequences[0]
    length = min(len(s) for s in sequences) - 1
    for other in sequences[1:]:
        same = 0
        while same < length and other[same] == first[same]:
            same += 1
        length = same
    return length


def _saved_tokens(groups: Sequence[PrefixGroup]) -> int:
    return sum((len(group.rows) - 1) * group.length for group in groups)


def _vector_key(example: Any) -> bytes:
    return torch.as_tensor(example.embedding, dtype=torch.float32).numpy().tobytes()


def _prefix_obstacle(cached: Callable[..., Any] | None, routing: RoutingCollector | None, reuse: bool) -> str:
    """Why this call cannot reuse prefixes, or "" when it can."""
    if not reuse:
        return "off (reuse_prefix=False)"
    if cached is None:
        return "prefix tuning feeds its own prefix through the key/value cache"
    if routing is not None and routing.tokens != "answer":
        return f"routing over tokens={routing.tokens!r} needs every prompt token's routing"
    return ""


def _share(model: nn.Module, desc: str) -> tuple[int, int]:
    """This process's share of the batches, (index, count): all of them for a sharded model."""
    state = process_state()
    if state.num_processes == 1:
        return 0, 1
    if is_sharded(model):
        logger.info(
            "%s: the model is sharded; each of the %d processes scores every batch", desc, state.num_processes
        )
        return 0, 1
    logger.info("%s: batches shared out over %d processes", desc, state.num_processes)
    return state.process_index, state.num_processes


def _score_share(
    model: nn.Module,
    collator: PromptCollator,
    rows: Sequence[EncodedPrompt],
    batch_size: int,
    routing: RoutingCollector | None,
    share: tuple[int, int],
    desc: str,
    groups: Sequence[PrefixGroup],
) -> tuple[list[np.ndarray | None], str | None]:
    """Score this process's ``share`` (index, count) of the plan's batches and gather every process's
    scores (and routing) into the full, ordered lists; with the reason when a prefix pass found no usable
    cache on any process (then nothing is gathered and the caller plans again without prefixes)."""
    chunks, plan = plan_batches(rows, groups, batch_size)
    index, count = share
    mine = plan[index::count]
    local = RoutingCollector(routing.tokens) if routing is not None else None
    probs: list[np.ndarray | None] = [None] * len(rows)
    failed = None
    with tqdm(total=sum(len(b.rows) for b in mine), desc=desc, unit="q", leave=False) as bar:
        try:
            _score_batches(model, collator, rows, chunks, mine, local, probs, bar)
        except CacheUnavailable as error:
            failed = str(error)
    scored = sorted(i for batch in mine for i in batch.rows)
    vectors = local.vectors() if local is not None and scored else {}
    part = (failed, scored, [probs[i] for i in scored], vectors)
    parts = gather_objects(part) if count > 1 else [part]
    failures = [part[0] for part in parts if part[0] is not None]
    if failures:
        return probs, failures[0]
    for _, indices, values, layers in parts:
        for i, value in zip(indices, values, strict=True):
            probs[i] = value
        if routing is not None and indices:
            _replay_routing(routing, indices, layers)
    return probs, None


def plan_batches(
    rows: Sequence[EncodedPrompt], groups: Sequence[PrefixGroup], batch_size: int
) -> tuple[list[list[PrefixGroup]], list[Batch]]:
    """The batches of one scoring call, in the order one process runs them: each chunk of prefix groups
    (`_group_chunks`) in parts of at most ``batch_size`` prompts, longest rest first, then the prompts in
    no group, longest first (similar lengths share a batch). Returns the chunks and the batches."""
    chunks = list(_group_chunks(groups, batch_size))
    plan = []
    for c, chunk in enumerate(chunks):
        members = [(g, i) for g, group in enumerate(chunk) for i in group.rows]
        members.sort(key=lambda m: chunk[m[0]].length - len(rows[m[1]].input_ids))  # longest rest first
        for part in _chunks(members, batch_size):
            plan.append(Batch(tuple(i for _, i in part), c, tuple(g for g, _ in part)))
    grouped = {i for group in groups for i in group.rows}
    order = sorted((i for i in range(len(rows)) if i not in grouped), key=lambda i: -len(rows[i].input_ids))
    plan += [Batch(tuple(chunk)) for chunk in _chunks(order, batch_size)]
    return chunks, plan


def _replay_routing(
    routing: RoutingCollector, rows: Sequence[int], vectors: Mapping[str, np.ndarray]
) -> None:
    """Add another process's routing vectors (layer -> [rows, experts], rows ascending) to ``routing``
    as one-token rows, which its answer and prompt scopes both read back unchanged."""
    weights = {layer: torch.from_numpy(matrix)[:, None, :] for layer, matrix in vectors.items()}
    ones = torch.ones(len(rows), 1)
    routing.add(rows, weights, ones, torch.zeros(len(rows), dtype=torch.long))


def _score_batches(
    model: nn.Module,
    collator: PromptCollator,
    rows: Sequence[EncodedPrompt],
    chunks: Sequence[Sequence[PrefixGroup]],
    batches: Sequence[Batch],
    routing: RoutingCollector | None,
    probs: list[np.ndarray | None],
    bar: Any,
) -> None:
    """Score ``batches`` of the plan; a chunk's prefixes run once for its consecutive batches here."""
    plain, cached = method_call(model), cache_call(model)
    prefix: tuple[int, DynamicCache, torch.Tensor] | None = None
    for batch in batches:
        if batch.chunk is None:
            _score_plain(plain, model, collator, rows, batch, routing, probs)
        else:
            if prefix is None or prefix[0] != batch.chunk:
                prefix = (batch.chunk, *_run_prefixes(cached, model, collator, rows, chunks[batch.chunk]))
            _score_on_prefix(
                cached, model, collator, rows, chunks[batch.chunk], prefix[1:], batch, routing, probs
            )
        bar.update(len(batch.rows))


def _score_plain(
    call: Callable[..., Any],
    model: nn.Module,
    collator: PromptCollator,
    rows: Sequence[EncodedPrompt],
    batch: Batch,
    routing: RoutingCollector | None,
    probs: list[np.ndarray | None],
) -> None:
    """One pass per prompt of ``batch``."""
    device = next(model.parameters()).device
    chunk = list(batch.rows)
    tensors = _tensors_to(collator.collate([rows[i] for i in chunk]), device)
    with _recording(model, routing) as rec:
        logits = _forward_answers(call, tensors)
    if routing is not None:
        routing.add(chunk, rec.weights, tensors["attention_mask"], tensors["answer_positions"])
    _pick_options(logits, [rows[i] for i in chunk], chunk, probs)


def _run_prefixes(
    call: Callable[..., Any],
    model: nn.Module,
    collator: PromptCollator,
    rows: Sequence[EncodedPrompt],
    chunk: Sequence[PrefixGroup],
) -> tuple[DynamicCache, torch.Tensor]:
    """Each group's prefix of ``chunk`` once (one batch, right-padded): its key/value cache and mask."""
    device = next(model.parameters()).device
    firsts = [rows[group.rows[0]] for group in chunk]
    prefixes = [row.input_ids[: group.length] for row, group in zip(firsts, chunk, strict=True)]
    ids, prefix_mask = (
        t.to(device) for t in pad_token_rows(prefixes, collator.tokenizer.pad_token_id, "right")
    )
    cache = DynamicCache()
    call(
        ids,
        prefix_mask,
        demographic_embeds=_vectors([row.example for row in firsts], device)
        if collator.demographics
        else None,
        position_ids=position_ids_from_mask(prefix_mask),
        logits_to_keep=1,
        cache=cache,
    )
    _check_cache(cache, ids.shape[1])
    return cache, prefix_mask


def _score_on_prefix(
    call: Callable[..., Any],
    model: nn.Module,
    collator: PromptCollator,
    rows: Sequence[EncodedPrompt],
    chunk: Sequence[PrefixGroup],
    prefix: tuple[DynamicCache, torch.Tensor],
    batch: Batch,
    routing: RoutingCollector | None,
    probs: list[np.ndarray | None],
) -> None:
    """The remaining tokens of ``batch``'s prompts on a copy of their prefixes' cache, right-padded, with
    positions continuing after the prefix."""
    device = next(model.parameters()).device
    cache, prefix_mask = prefix
    index = torch.tensor(batch.groups, device=device)
    starts = torch.tensor([chunk[g].length for g in batch.groups], device=device)
    picked = list(batch.rows)
    rest = [rows[i].input_ids[chunk[g].length :] for g, i in zip(batch.groups, picked, strict=True)]
    ids, mask = (t.to(device) for t in pad_token_rows(rest, collator.tokenizer.pad_token_id, "right"))
    answers = mask.sum(dim=1) - 1
    with _recording(model, routing) as rec:
        output = call(
            ids,
            torch.cat([prefix_mask[index], mask], dim=1),
            demographic_embeds=_vectors([rows[i].example for i in picked], device)
            if collator.demographics
            else None,
            position_ids=starts[:, None] + position_ids_from_mask(mask),
            logits_to_keep=answers[:, None],
            cache=_select_rows(cache, index),
        )
    if routing is not None:
        routing.add(picked, rec.weights, mask, answers)
    _pick_options(output.logits[:, -1, :], [rows[i] for i in picked], picked, probs)


def _select_rows(cache: DynamicCache, index: torch.Tensor) -> DynamicCache:
    """A new cache holding rows ``index`` of ``cache`` (which later calls leave untouched)."""
    return DynamicCache(ddp_cache_data=[(layer.keys[index], layer.values[index]) for layer in cache.layers])


def answer_logits(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    padding_side: str,
    demographic_embeds: torch.Tensor | None = None,
    precision: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vocabulary logits [batch, vocab] at each row's answer position, and those positions [batch].

    For callers that pad their own batches (the server); positions come from the mask as the
    collator computes them.
    """
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids_from_mask(attention_mask),
        "answer_positions": answer_positions_from_mask(attention_mask, padding_side),
        "demographic_embeds": demographic_embeds,
    }
    resolved = resolve_precision(precision, "eval", input_ids.device.type)
    with _autocast(input_ids.device, resolved.name):
        return _forward_answers(method_call(model), batch), batch["answer_positions"]


def _forward_answers(call: Callable[..., Any], batch: Mapping[str, Any]) -> torch.Tensor:
    """One forward pass of ``call`` (the `PreparedModel` call) on a `PromptCollator` batch, projecting
    only the answer positions: logits [batch, vocab]."""
    output = call(
        batch["input_ids"],
        batch["attention_mask"],
        demographic_embeds=batch.get("demographic_embeds"),
        position_ids=batch["position_ids"],
        logits_to_keep=batch["answer_positions"][:, None],
    )
    return output.logits[:, -1, :]


def method_call(model: nn.Module) -> Callable[..., Any]:
    """``model`` behind the `PreparedModel` call signature: a `PreparedModel` itself, any other model
    through `_hf_call` (Hugging Face keywords, no cache, ``demographic_embeds`` only when given)."""
    return model if isinstance(model, PreparedModel) else partial(_hf_call, model)


def cache_call(model: nn.Module) -> Callable[..., Any] | None:
    """The `PreparedModel` call with a ``cache`` argument (a `DynamicCache` it fills), or None for prefix
    tuning, whose virtual tokens travel in that cache. A `PreparedModel`'s wrapped model is called the
    way `PreparedModel.forward` calls it."""
    inner = model.model if isinstance(model, PreparedModel) else model
    if isinstance(model, PreparedModel) and model.spec.kind == "prefix":
        return None
    peft_config = getattr(inner, "peft_config", None)
    if peft_config and any(config.is_prompt_learning for config in peft_config.values()):
        return None
    return partial(_hf_call, inner)


def _hf_call(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    demographic_embeds: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    logits_to_keep: int | torch.Tensor = 0,
    cache: DynamicCache | None = None,
) -> Any:
    # A bare causal LM has no demographic_embeds argument; a CuMA model takes it.
    extra = {} if demographic_embeds is None else {"demographic_embeds": demographic_embeds}
    if cache is not None:
        extra["cache"] = cache
    return model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        logits_to_keep=logits_to_keep,
        use_cache=cache is not None,
        **extra,
    )


def _check_cache(cache: DynamicCache, length: int) -> None:
    """A prefix pass must have filled a plain (not sliding-window) cache with every prefix token."""
    if not cache.layers or cache.get_seq_length() != length:
        raise CacheUnavailable("the model did not fill the key/value cache it was given")
    kinds = {type(layer).__name__ for layer in cache.layers if type(layer) is not DynamicLayer}
    if kinds:
        raise CacheUnavailable(f"the model's cache has {sorted(kinds)} layers, not plain full-attention ones")


def _group_chunks(groups: Sequence[PrefixGroup], batch_size: int) -> Iterator[list[PrefixGroup]]:
    """Groups of similar prefix length with at most ``batch_size`` prompts between them (a larger group
    is a chunk of its own): one batch of prefixes each."""
    chunk: list[PrefixGroup] = []
    size = 0
    for group in sorted(groups, key=lambda g: -g.length):
        if chunk and size + len(group.rows) > batch_size:
            yield chunk
            chunk, size = [], 0
        chunk.append(group)
        size += len(group.rows)
    if chunk:
        yield chunk


def _pick_options(
    logits: torch.Tensor, rows: Sequence[EncodedPrompt], indices: Sequence[int], probs: list[Any]
) -> None:
    """Each row's softmax over its option letters' logits, stored at its example's index."""
    for row, index, values in zip(rows, indices, logits, strict=True):
        picked = values[torch.as_tensor(row.option_token_ids, device=values.device)]
        probs[index] = torch.softmax(picked.float(), dim=-1).cpu().numpy()


def _record(
    resolved: Any, rows: Sequence[EncodedPrompt], groups: Sequence[PrefixGroup], reason: str
) -> ScoringRecord:
    total = sum(len(row.input_ids) for row in rows)
    cached = sum(len(group.rows) for group in groups)
    if groups:
        lengths = [group.length for group in groups]
        reason = f"{len(groups)} shared prefixes of {min(lengths)}-{max(lengths)} tokens"
    elif not reason:
        reason = f"no two prompts share {MIN_SHARED_PREFIX} or more tokens and a demographic vector"
    return ScoringRecord(
        precision=resolved.name,
        precision_reason=resolved.reason,
        prefix_cache=bool(groups),
        prefix_reason=reason,
        cached_prompts=cached,
        prompt_tokens=total,
        computed_tokens=total - _saved_tokens(groups),
    )


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _recording(model: nn.Module, routing: RoutingCollector | None) -> contextlib.AbstractContextManager:
    return model.record_routing() if routing is not None else contextlib.nullcontext()


def _vectors(examples: Sequence[Any], device: torch.device) -> torch.Tensor:
    rows = [torch.as_tensor(ex.embedding, dtype=torch.float32) for ex in examples]
    return torch.stack(rows).to(device)


def _tensors_to(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()
    }


def _chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
