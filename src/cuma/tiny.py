"""Tiny random causal LMs and an in-process tokenizer, for tests and `--quick` runs.

Nothing here downloads anything: the tokenizer is a byte-level BPE trained in
milliseconds on a small built-in corpus, and the models are built from a config.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast, Qwen3Config

# ChatML, the template family of SmolLM2 and Qwen; `enable_thinking` is accepted and ignored.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "You are a helpful assistant that answers survey questions honestly.",
    "You are a person from the United States, age group: 25-34 years old, gender: female.",
    "Are we spending too much, too little, or about the right amount on education?",
    "A. Too little B. About right C. Too much D. Other E. None F. G. H. I. J. K.",
    "Answer with the letter of one option. Country: Norway, Age: 45, Education: degree.",
    "Immigrants make the country a worse or better place to live. Religion, ethnicity, employment.",
]
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]


def tiny_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with a ChatML chat template; single letters are single tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def tiny_model(
    family: str = "llama",
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
) -> torch.nn.Module:
    """A randomly initialised Llama or Qwen3 causal LM small enough for unit tests."""
    common = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        pad_token_id=SPECIAL_TOKENS.index("<pad>"),
        bos_token_id=SPECIAL_TOKENS.index("<|im_start|>"),
        eos_token_id=SPECIAL_TOKENS.index("<|im_end|>"),
    )
    if family == "llama":
        config = LlamaConfig(**common)
    elif family == "qwen3":
        config = Qwen3Config(head_dim=hidden_size // 4, **common)
    else:
        raise ValueError(f"unknown tiny model family {family!r}; expected 'llama' or 'qwen3'")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.name_or_path = f"tiny-{family}"
    model.config.name_or_path = f"tiny-{family}"
    return model.eval()
