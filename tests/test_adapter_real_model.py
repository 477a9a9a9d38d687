"""A CuMA adapter on the real SmolLM2-135M-Instruct with the real MiniLM encoder: forward and generate."""

from pathlib import Path

import pytest
import torch
from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

from cuma import CuMAConfig, DemographicEncoder, get_cuma_model, load_base_model
from cuma.adapter import CuMAPeftModel
from cuma.demo import perturb_experts
from cuma.models import SMOLLM2

PROFILES = [
    {"country": "Nigeria", "age": "18-29", "religion": "Muslim"},
    {"country": "Sweden", "age": "65+", "religion": "None"},
]
Adapted = tuple[CuMAPeftModel, PreTrainedTokenizerBase, torch.Tensor]
"""The adapted model, its tokenizer, and one encoder vector per profile."""
QUESTION = [{"role": "user", "content": "Is religion important in your life? Answer A (yes) or B (no)."}]


@pytest.fixture(scope="module")
def adapted(smollm2_gguf: PreTrainedModel) -> Adapted:
    base, tokenizer = load_base_model(SMOLLM2)
    torch.manual_seed(0)
    encoder = DemographicEncoder()
    model = get_cuma_model(base, CuMAConfig.from_preset("cuma", **encoder.adapter_settings()))
    perturb_experts(model, seed=0)
    return model.eval(), tokenizer, encoder.encode(PROFILES)


def batch(tokenizer: PreTrainedTokenizerBase, rows: int) -> BatchEncoding:
    text = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    return tokenizer([text] * rows, return_tensors="pt")


@pytest.mark.slow
def test_forward_routes_each_row_by_its_profile(adapted: Adapted) -> None:
    model, tokenizer, embeds = adapted
    inputs = batch(tokenizer, 2)
    with torch.no_grad(), model.record_routing() as record:
        output = model(**inputs, demographic_embeds=embeds)
        with model.disable_adapter():
            bare = model(**inputs).logits
    assert output.logits.shape[:2] == inputs["input_ids"].shape
    assert torch.isfinite(output.logits).all() and output.aux_loss > 0
    assert not torch.allclose(output.logits, bare), "the experts change the base model's output"
    assert not torch.allclose(output.logits[0], output.logits[1]), "same tokens, different profiles"
    weights = next(iter(record.weights.values()))
    assert weights.shape[:2] == inputs["input_ids"].shape
    assert (weights > 0).sum(-1).eq(2).all(), "top-2 experts per token"
    assert not torch.equal(weights[0] > 0, weights[1] > 0)


@pytest.mark.slow
def test_generate_with_beams_follows_the_profile(adapted: Adapted) -> None:
    model, tokenizer, embeds = adapted
    inputs = batch(tokenizer, 2)
    settings = dict(max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    beams = model.generate(
        **inputs, demographic_embeds=embeds, num_beams=2, num_return_sequences=2, **settings
    )
    assert beams.shape[0] == 4 and beams.shape[1] > inputs["input_ids"].shape[1]
    greedy = model.generate(**inputs, demographic_embeds=embeds, **settings)
    for row in range(2):
        alone = model.generate(
            input_ids=inputs["input_ids"][row : row + 1], demographic_embeds=embeds[row : row + 1], **settings
        )
        assert torch.equal(greedy[row : row + 1], alone)


@pytest.mark.slow
def test_saved_adapter_rebuilds_its_encoder_and_answers_the_same(adapted: Adapted, tmp_path: Path) -> None:
    model, _, embeds = adapted
    model.save_pretrained(tmp_path)
    encoder = DemographicEncoder.from_adapter(tmp_path)
    assert encoder.identity() == model.peft_config["default"].encoder
    assert torch.equal(encoder.encode(PROFILES), embeds)
    encoder.check_adapter(model.peft_config["default"])
    other = DemographicEncoder(pooling="last")
    with pytest.raises(
        ValueError, match="another demographic encoder: pooling: adapter 'mean', encoder 'last"
    ):
        other.check_adapter(model.peft_config["default"])
