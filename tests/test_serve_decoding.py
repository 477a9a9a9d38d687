"""Per-row decoding of a batch, the profile codec and the micro-batcher's grouping, without a server."""

import asyncio
import threading

import pytest
import torch

from cuma.data.profiles import KEY_VALUE, WVB_PERSONA
from cuma.quick import RandomProfileEncoder
from cuma.serve.batcher import MicroBatcher
from cuma.serve.decoding import RowDecoder, RowTracker
from cuma.serve.errors import APIError
from cuma.serve.jobs import GenerationJob, Sampling
from cuma.serve.profiles import ProfileCodec
from cuma.tiny import tiny_tokenizer

TOKENIZER = tiny_tokenizer()
EOS = frozenset({TOKENIZER.eos_token_id})


def ids(text: str) -> list[int]:
    return TOKENIZER.encode(text, add_special_tokens=False)


Pieces = list[tuple[str, str | None]]


def decode(
    text: str, max_tokens: int = 100, stop: tuple[str, ...] = (), eos: bool = False
) -> tuple[RowDecoder, Pieces]:
    """Feed ``text``'s tokens to a decoder; also return what it emitted as (text, finish reason)."""
    pieces: Pieces = []
    decoder = RowDecoder(TOKENIZER, EOS, max_tokens, stop, emit=lambda t, r: pieces.append((t, r)))
    for token in ids(text) + ([TOKENIZER.eos_token_id] if eos else []):
        decoder.push(token)
    decoder.close()
    return decoder, pieces


def test_stop_sequence_is_cut_and_never_streamed() -> None:
    decoder, pieces = decode("ab STOP cd", stop=("STOP",))
    assert decoder.text == "ab "
    assert decoder.finish_reason == "stop"
    assert all("S" not in piece for piece, _ in pieces)
    assert "".join(piece for piece, _ in pieces) == "ab "
    assert pieces[-1][1] == "stop"


def test_incomplete_utf8_is_held_back() -> None:
    decoder, pieces = decode("é")
    assert [piece for piece, _ in pieces if piece] == ["é"]
    assert decoder.text == "é"


def test_max_tokens_and_eos() -> None:
    long, _ = decode("ab STOP cd", max_tokens=3)
    assert long.finish_reason == "length"
    assert long.completion_tokens == 3 and long.text == TOKENIZER.decode(ids("ab STOP cd")[:3])
    ended, _ = decode("ab", eos=True)
    assert ended.finish_reason == "stop"
    assert ended.text == "ab" and ended.completion_tokens == 3  # EOS is generated, so it counts


def test_tracker_reports_done_rows_and_stops_cancelled_ones() -> None:
    decoders = [RowDecoder(TOKENIZER, EOS, 2), RowDecoder(TOKENIZER, EOS, 5), RowDecoder(TOKENIZER, EOS, 5)]
    cancelled = threading.Event()
    tracker = RowTracker(decoders, [lambda: False, lambda: False, cancelled.is_set])
    step = torch.tensor([[ids("a")[0]], [ids("b")[0]], [ids("c")[0]]])
    assert tracker(step, None).tolist() == [False, False, False]
    cancelled.set()
    assert tracker(step, None).tolist() == [True, False, True]
    assert decoders[2].finish_reason == "cancelled" and decoders[2].text == "c"


class CountingEncoder(RandomProfileEncoder):
    def __init__(self) -> None:
        super().__init__()
        self.encoded: list[str] = []

    def encode(self, items):  # type: ignore[override]
        self.encoded.extend(items)
        return super().encode(items)


def test_profile_encodings_are_cached_by_rendered_text() -> None:
    encoder = CountingEncoder()
    codec = ProfileCodec(encoder, WVB_PERSONA, cache_size=2)
    norway = codec.render({"country": "Norway"})
    assert norway == WVB_PERSONA.render({"country": "Norway"})
    same = codec.render(norway)  # a ready sentence equal to the rendering shares its cache entry
    first = codec.encode([norway, same, norway])
    assert encoder.encoded == [norway]
    assert torch.equal(first[0], first[1])
    codec.encode([codec.render({"country": "Chile"}), codec.render({"country": "Peru"})])
    assert len(codec) == 2  # least recently used dropped
    codec.encode([norway])
    assert encoder.encoded.count(norway) == 2


def test_profile_fields_come_from_the_template_or_are_given() -> None:
    assert ProfileCodec(RandomProfileEncoder(), WVB_PERSONA).fields[:2] == ("country", "age_group")
    free = ProfileCodec(RandomProfileEncoder(), KEY_VALUE)
    assert free.render({"shoe_size": 42}) == "Shoe size: 42"
    listed = ProfileCodec(RandomProfileEncoder(), KEY_VALUE, fields=["country"])
    with pytest.raises(APIError, match=r"\['shoe_size'\].*\['country'\]"):
        listed.render({"shoe_size": 42})


def job(temperature: float = 0.0, n: int = 1, seed: int | None = None) -> GenerationJob:
    return GenerationJob([1, 2], None, Sampling(temperature, 1.0, seed), max_tokens=4, n=n)


def test_batches_group_compatible_jobs_up_to_the_row_limit() -> None:
    batches: list[list[GenerationJob]] = []

    def runner(jobs):
        batches.append(list(jobs))
        return [None] * len(jobs)

    async def scenario() -> None:
        batcher = MicroBatcher(runner, max_batch_size=3, window_s=0.05, max_queue=10)
        batcher.start()
        jobs = [job(), job(1.0), job(n=2), job(), job(1.0, seed=1), job(1.0, seed=1)]
        futures = [batcher.submit(j) for j in jobs]
        await asyncio.gather(*futures)
        await batcher.close()
        return jobs

    jobs = asyncio.run(scenario())
    greedy, sampled, greedy_two, greedy_last, seeded, seeded_too = jobs
    assert batches[0] == [greedy, greedy_two]  # 3 rows: the next greedy job waits
    assert [greedy_last] in batches and [sampled] in batches
    assert [seeded] in batches and [seeded_too] in batches  # seeded sampling always runs alone
    assert len(batches) == 5


def test_queue_bound_and_closing() -> None:
    async def scenario() -> None:
        release = threading.Event()
        batcher = MicroBatcher(lambda jobs: [release.wait(10)] * len(jobs), 1, 0.0, max_queue=1)
        batcher.start()
        running = batcher.submit(job())
        while batcher.queued:  # the first job leaves the queue once its batch starts
            await asyncio.sleep(0.01)
        waiting = batcher.submit(job())
        with pytest.raises(APIError) as full:
            batcher.submit(job())
        assert full.value.status == 429
        closing = asyncio.create_task(batcher.close())
        await asyncio.sleep(0)
        with pytest.raises(APIError) as refused:
            batcher.submit(job())
        assert refused.value.status == 503
        release.set()
        assert await running is True and await waiting is True
        await closing

    asyncio.run(scenario())
