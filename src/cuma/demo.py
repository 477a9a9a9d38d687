"""`cuma demo`: put a CuMA adapter on a real model and show what it trains and how it routes two profiles.

Both profiles answer the same prompt; they differ only in the demographic embedding that the routers
read, so any difference in routing or answers comes from demographic routing alone. Each profile is
rendered to text once, by the template the data pipeline uses, and that text is what is shown and
encoded. torch and transformers are imported on use, so building the CLI parser stays fast.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from cuma.data.profiles import KEY_VALUE, Profile

if TYPE_CHECKING:
    import torch

    from cuma.adapter import CuMAPeftModel

T = TypeVar("T")

DEMO_PROFILES = {
    "A": Profile(country="Norway", age=24, gender="female", education="university degree"),
    "B": Profile(country="United States", age=68, gender="male", education="high school"),
}
SURVEY_PROMPT = (
    "How important is religion in your life? Choose one option and explain briefly.\n"
    "A. Very important  B. Rather important  C. Not very important  D. Not at all important"
)
EXPERT_NOISE_STD = 0.02
"""Std of the seeded noise written into the (zero-initialised) expert B matrices for the demo."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2-135m-instruct", help="base model alias, path or hub id")
    parser.add_argument("--encoder", default="all-MiniLM-L6-v2", help="demographic encoder path or hub id")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the router initialisation and expert noise"
    )
    parser.add_argument("--max-new-tokens", type=int, default=40, help="length of each generated answer")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    main(args.model, args.encoder, args.seed, args.max_new_tokens)


def main(
    model_name: str = "smollm2-135m-instruct",
    encoder_name: str = "all-MiniLM-L6-v2",
    seed: int = 0,
    max_new_tokens: int = 40,
) -> None:
    """Build the adapted model, print its parameter table, routing of two profiles and their answers."""
    import torch

    from cuma.adapter import CuMAConfig, get_cuma_model
    from cuma.encoder import DemographicEncoder
    from cuma.models import load_base_model

    base, tokenizer = _step(f"Loading base model {model_name}", lambda: load_base_model(model_name))
    encoder = _step(f"Loading demographic encoder {encoder_name}", lambda: DemographicEncoder(encoder_name))
    config = CuMAConfig.from_preset("cuma", **encoder.adapter_settings())
    torch.manual_seed(seed)
    model = get_cuma_model(base, config)
    perturb_experts(model, seed)

    print(
        f"\nCuMA preset 'cuma' on {model_name}: {config.num_experts} LoRA experts of rank {config.rank} on "
        f"{', '.join(config.target_modules)},\n"
        f"top-{config.top_k} routing on [hidden state ; profile embedding]."
    )
    print(
        "The adapter is untrained. Expert B matrices start at zero, which would leave the model unchanged,\n"
        f"so for this demo they are filled with random noise (std {EXPERT_NOISE_STD}, seed {seed}); the\n"
        "routers are randomly initialised. The routing shows the mechanism, not learned cultural structure.\n"
    )
    print("Trainable parameters")
    print(model.parameter_report().table())

    texts = {label: KEY_VALUE.render(profile) for label, profile in DEMO_PROFILES.items()}
    print("\nProfiles, as rendered for the encoder:")
    for label, text in texts.items():
        print(f"  {label}: {text}")
    print("Prompt, the same for both:")
    print("\n".join(f"  {line}" for line in SURVEY_PROMPT.splitlines()) + "\n")

    embeds = encoder.encode(list(texts.values()))
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": SURVEY_PROMPT}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    # One row per profile; the rows are identical, so no padding is involved.
    inputs = {key: prompt[key].repeat(len(DEMO_PROFILES), 1) for key in ("input_ids", "attention_mask")}
    with torch.no_grad(), model.record_routing() as record:
        logits = model(**inputs, demographic_embeds=embeds, logits_to_keep=1).logits[:, -1]
    print(routing_table(model, record.weights, list(DEMO_PROFILES)) + "\n")
    first_row = {key: value[:1] for key, value in inputs.items()}
    with torch.no_grad(), model.disable_adapter():
        bare_logits = model(**first_row, logits_to_keep=1).logits[0, -1]
    rows = {f"profile {label}": row for label, row in zip(DEMO_PROFILES, logits, strict=True)}
    print(option_table(tokenizer, {**rows, "base model": bare_logits}))

    generated = _step(
        "Generating answers",
        lambda: model.generate(
            **inputs, demographic_embeds=embeds, max_new_tokens=max_new_tokens, do_sample=False
        ),
    )
    with model.disable_adapter():
        bare = model.generate(**first_row, max_new_tokens=max_new_tokens, do_sample=False)
    start = inputs["input_ids"].shape[1]
    for label, row in zip(DEMO_PROFILES, generated, strict=True):
        print(f"Answer for profile {label}: {_decode(tokenizer, row[start:])}")
    print(f"Base model, adapter disabled: {_decode(tokenizer, bare[0, start:])}")


def perturb_experts(model: CuMAPeftModel, seed: int, std: float = EXPERT_NOISE_STD) -> None:
    """Overwrite every expert's B (zero at initialisation) with seeded Gaussian noise, so experts differ."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.layers.values():
            weight = layer.cuma_B["default"]
            weight.copy_(torch.randn(weight.shape, generator=generator) * std)


def routing_table(model: CuMAPeftModel, weights: dict[str, torch.Tensor], labels: list[str]) -> str:
    """Top-k experts and weights of each row's last token, one line per router (i.e. per block)."""
    config = model.peft_config["default"]
    top_k = config.top_k or config.num_experts
    routers: dict[str, tuple[str, torch.Tensor]] = {}
    for name, layer_weights in weights.items():
        # Layers that share a router (q and v of one block) have identical weights: show each router once.
        routers.setdefault(
            model.layers[name].cuma_router_key["default"], (name.rpartition(".")[0], layer_weights[:, -1])
        )
    rows, differ = [], 0
    for block, last in routers.values():
        values, experts = last.topk(top_k, dim=-1)
        differ += len({frozenset(row.tolist()) for row in experts}) > 1
        cells = [
            "  ".join(f"e{e} {v:.2f}" for v, e in zip(vs.tolist(), es.tolist(), strict=True))
            for vs, es in zip(values, experts, strict=True)
        ]
        rows.append((block, cells))
    width = max(len(block) for block, _ in rows)
    cell = max(len(c) for _, cells in rows for c in cells)
    return "\n".join(
        [
            f"Routing of the last prompt token: top-{top_k} experts (e<index> weight) per router",
            f"{'block':<{width}}  " + "  ".join(f"{'profile ' + label:<{cell}}" for label in labels),
            *(f"{block:<{width}}  " + "  ".join(f"{c:<{cell}}" for c in cells) for block, cells in rows),
            f"The chosen experts differ between the profiles at {differ} of {len(rows)} routers.",
        ]
    )


def option_table(tokenizer: object, logits: dict[str, torch.Tensor], options: str = "ABCD") -> str:
    """Probability of each option letter as the first answer token, renormalised over the options."""
    ids = [tokenizer.encode(letter, add_special_tokens=False) for letter in options]
    if any(len(token) != 1 for token in ids):
        return "(the option letters are not single tokens for this tokenizer: no option probabilities)\n"
    lines = [f"Probability of each option as the first answer token (renormalised over {', '.join(options)})"]
    width = max(len(label) for label in logits)
    for label, row in logits.items():
        probs = row[[token[0] for token in ids]].float().softmax(dim=-1).tolist()
        lines.append(
            f"  {label:<{width}}  " + "  ".join(f"{o} {p:.3f}" for o, p in zip(options, probs, strict=True))
        )
    return "\n".join(lines) + "\n"


def _decode(tokenizer: object, ids: torch.Tensor) -> str:
    return " ".join(tokenizer.decode(ids, skip_special_tokens=True).split())


def _step(message: str, work: Callable[[], T]) -> T:
    print(f"{message} ...", flush=True)
    start = time.perf_counter()
    result = work()
    print(f"  done in {time.perf_counter() - start:.1f} s", flush=True)
    return result
