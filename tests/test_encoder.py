"""The frozen demographic encoder, on the real packaged all-MiniLM-L6-v2."""

from pathlib import Path

import pytest
import torch

from cuma.data.profiles import KEY_VALUE, WVB_PERSONA
from cuma.encoder import DemographicEncoder, last_pool, mean_pool, packaged_minilm_dir

PROFILES = [
    {"country": "Norway", "age": 24, "gender": "female"},
    {"country": "United States", "age": 67, "gender": "male", "education": "high school"},
    {"country": "Brazil", "age": 41, "gender": "female", "religion": None},
    {"country": "Japan", "age": 35, "gender": "male"},
    {"country": "Kenya", "age": 52, "gender": "female", "employment": "self-employed"},
]


@pytest.fixture(scope="module")
def encoder() -> DemographicEncoder:
    return DemographicEncoder()


def texts() -> list[str]:
    return [KEY_VALUE.render(profile) for profile in PROFILES]


def test_frozen_and_float32(encoder: DemographicEncoder) -> None:
    assert encoder.dim == 384
    assert not encoder.model.training
    assert not any(p.requires_grad for p in encoder.model.parameters())
    vectors = encoder.encode(PROFILES)
    assert vectors.shape == (len(PROFILES), 384)
    assert vectors.dtype == torch.float32 and vectors.device.type == "cpu"
    assert not vectors.requires_grad
    assert encoder.encode([]).shape == (0, 384)


def test_masked_mean_pooling_matches_manual_mean(encoder: DemographicEncoder) -> None:
    batch = encoder.tokenizer(texts(), padding=True, return_tensors="pt")
    assert not batch["attention_mask"].all(), "the test needs a padded batch"
    with torch.no_grad():
        hidden = encoder.model(**batch).last_hidden_state
    pooled = mean_pool(hidden, batch["attention_mask"])
    for row, mask in enumerate(batch["attention_mask"]):
        manual = hidden[row, mask.bool()].mean(dim=0)
        torch.testing.assert_close(pooled[row], manual)
    raw = DemographicEncoder(normalize=False)
    torch.testing.assert_close(raw.encode(texts()), pooled, atol=1e-5, rtol=1e-5)


def test_vector_independent_of_batch_composition_and_order(encoder: DemographicEncoder) -> None:
    target = PROFILES[1]
    encoder.clear_cache()
    alone = encoder.encode([target])[0]
    for companions in (PROFILES, PROFILES[::-1], [PROFILES[0], target, target], [*PROFILES[2:], target]):
        encoder.clear_cache()
        vectors = encoder.encode(companions)
        rows = [i for i, profile in enumerate(companions) if profile is target]
        for row in rows:
            assert torch.equal(vectors[row], alone)


def test_matches_sentence_transformers(encoder: DemographicEncoder) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference = sentence_transformers.SentenceTransformer(str(packaged_minilm_dir()), device="cpu")
    expected = reference.encode(texts(), convert_to_tensor=True)
    assert encoder.normalize, "all-MiniLM-L6-v2's modules.json has a Normalize module"
    torch.testing.assert_close(encoder.encode(texts()), expected.cpu(), atol=1e-6, rtol=1e-5)


def test_directory_without_sentence_transformers_modules_is_not_normalised(
    encoder: DemographicEncoder, tmp_path: Path
) -> None:
    encoder.model.save_pretrained(tmp_path)
    encoder.tokenizer.save_pretrained(tmp_path)
    plain = DemographicEncoder(tmp_path)
    assert not plain.normalize
    raw = plain.encode(PROFILES)
    torch.testing.assert_close(torch.nn.functional.normalize(raw, dim=-1), encoder.encode(PROFILES))
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(len(PROFILES)))


@pytest.mark.parametrize("side", ["left", "right"])
def test_last_pool_picks_last_real_token(side: str) -> None:
    lengths = [3, 5, 1]
    hidden = torch.randn(len(lengths), 5, 4)
    mask = torch.zeros(len(lengths), 5, dtype=torch.long)
    expected = []
    for row, length in enumerate(lengths):
        span = slice(5 - length, 5) if side == "left" else slice(0, length)
        mask[row, span] = 1
        expected.append(hidden[row, span][-1])
    assert torch.equal(last_pool(hidden, mask), torch.stack(expected))


def test_last_pooling_encodes_final_token() -> None:
    encoder = DemographicEncoder(pooling="last", normalize=False)
    text = texts()[0]
    batch = encoder.tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        final = encoder.model(**batch).last_hidden_state[0, -1]
    torch.testing.assert_close(encoder.encode([text])[0], final)


def test_profile_and_its_rendering_give_the_same_vector(encoder: DemographicEncoder) -> None:
    encoder.clear_cache()
    from_profiles = encoder.encode(PROFILES)
    encoder.clear_cache()
    assert torch.equal(encoder.encode(texts()), from_profiles)
    persona = DemographicEncoder(template=WVB_PERSONA)
    assert torch.equal(persona.encode(PROFILES[:1])[0], encoder.encode([WVB_PERSONA.render(PROFILES[0])])[0])


def test_cache_hits_do_not_rerun_the_model() -> None:
    encoder = DemographicEncoder(cache_size=3)
    calls = []
    encoder.model.register_forward_hook(lambda *_: calls.append(1))
    first = encoder.encode(PROFILES[:3])
    ran = len(calls)
    assert ran > 0
    again = encoder.encode(PROFILES[:3][::-1])
    assert len(calls) == ran
    assert torch.equal(again, first.flip(0))
    encoder.encode(PROFILES[3:])  # evicts the least recently used entries: the cache is bounded
    encoder.encode(PROFILES[:1])
    assert len(calls) > ran
    ran = len(calls)
    encoder.clear_cache()
    encoder.encode(PROFILES[4:])
    assert len(calls) > ran


def test_bad_inputs_raise_clear_errors(encoder: DemographicEncoder, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-encoder"
    with pytest.raises(FileNotFoundError, match="no-such-encoder"):
        DemographicEncoder(missing)
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match=r"weights\.bin"):
        DemographicEncoder(tmp_path / "weights.bin")
    with pytest.raises(OSError, match="cannot load demographic encoder"):
        DemographicEncoder(tmp_path)
    with pytest.raises(ValueError, match="pooling"):
        DemographicEncoder(pooling="cls")
    with pytest.raises(TypeError, match="item 1"):
        encoder.encode(["Country: Norway", 42])
    with pytest.raises(TypeError, match="sequence"):
        encoder.encode("Country: Norway")
