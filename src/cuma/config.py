"""Experiment configuration: dataclasses that check their own values, loadable from YAML with overrides.

Override convention (one, documented): dotted ``section.field=value`` pairs after the options, e.g.
``cuma compare --config configs/gss-cuma.yaml train.lr=1e-4 data.n_train=2000 methods=[base,cuma]``.
Files and values are read by `cuma.yamlio` (YAML 1.2), so ``1e-4``, ``true`` and ``[a, b]`` mean what
they look like. A missing entry of a free-form mapping is created, so ``adapter_overrides.cuma.rank=64``
works whether or not the config already configures ``cuma``; those entries are typed by the method's own
config class (`cuma.adapter.CuMAConfig`, `PrefixConfig`) when the method is checked (`cuma.preflight`).

Every field is checked when its dataclass is constructed (`cuma.fieldcheck`: exact types, ranges, known
values), also when a user builds a `TrainConfig` in Python, and each error is one line naming
``section.field``, the value and where it came from. The checking is our own: OmegaConf's structured
configs (not a dependency) check types but not ranges, and its loader reads YAML 1.1 booleans (``NO`` is
false); transformers' ``HfArgumentParser`` builds flat ``--field`` flags rather than dotted sections, and
has no range checks either. Checks that need another object (the survey, the tokenizer, the method
registry, existing checkpoints) are in `cuma.preflight`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from cuma.errors import ConfigError
from cuma.fieldcheck import (
    AT_LEAST_1,
    FRACTION,
    NON_EMPTY,
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    Check,
    Checked,
    doc,
    field_docs,
)
from cuma.yamlio import parse_yaml, read_yaml

Precision = Literal["bf16", "fp32", "auto"]
Pooling = Literal["mean", "last"]
PaddingSide = Literal["left", "right"]
RoutingTokens = Literal["answer", "prompt"]
Objective = Literal["sft", "dpo", "grpo"]
DPOLoss = Literal["sigmoid", "ipo", "hinge"]
Pairing = Literal["all", "random", "majority"]
OptionOrder = Literal["fixed", "shuffled", "both"]
Reference = Literal["adapters-off", "precomputed"]
GRPOLoss = Literal["grpo", "dr_grpo", "dapo"]
ScaleRewards = Literal["group", "batch", "none"]
Reward = Literal["exact-match", "cell-share"]
Schedule = Literal[
    "constant",
    "constant_with_warmup",
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "inverse_sqrt",
]
"""transformers ``SchedulerType`` names the trainer can drive: built from the step counts alone and stepped
without a metric (reduce_lr_on_plateau, greedy, cosine_with_min_lr and warmup_stable_decay need more)."""
NO_WARMUP_SCHEDULES = ("constant",)
"""Schedules that ignore ``num_warmup_steps``: a warm-up asked for with them is an error."""

OVERRIDES = "command-line overrides"
"""The source errors name for values set as ``section.field=value``."""


@dataclass(frozen=True)
class ModelConfig(Checked):
    """Which base model and demographic encoder to use."""

    prefix: ClassVar[str] = "model."

    name: str = field(
        default="smollm2-135m-instruct",
        metadata=doc("Base model: alias, local path or hub id (cuma.models.load_base_model).", NON_EMPTY),
    )
    encoder: str = field(
        default="all-MiniLM-L6-v2",
        metadata=doc("Sentence encoder for profiles (cuma.encoder.DemographicEncoder).", NON_EMPTY),
    )
    encoder_pooling: Pooling = field(
        default="mean",
        metadata=doc("Encoder pooling: masked mean over tokens, or the last real token (decoder embedders)."),
    )
    dtype: Literal["float32", "bfloat16", "float16"] = field(
        default="float32",
        metadata=doc("Dtype of the frozen base weights; the compute precision is train.precision."),
    )


@dataclass(frozen=True)
class DataConfig(Checked):
    """Which survey, how it is split and sampled, and how prompts are rendered."""

    prefix: ClassVar[str] = "data."

    dataset: str = field(
        default="gss-spending-2018",
        metadata=doc(
            "Built-in survey name, path to a survey spec YAML or a WVB directory, or a chat dataset "
            "(prism, community-alignment: a preference comparison).",
            NON_EMPTY,
        ),
    )
    path: str | None = field(
        default=None,
        metadata=doc(
            "Local files of a chat dataset (prism: a folder with survey.jsonl and conversations.jsonl; "
            "community-alignment: a .jsonl/.parquet file or folder); null = the Hugging Face hub.",
            NON_EMPTY,
        ),
    )
    seed: int = field(default=0, metadata=doc("Seed of the respondent split and of the samples.", SEED))
    valid_fraction: float = field(
        default=0.1,
        metadata=doc("Share of respondents set aside: never trained on, scored only for tuning.", FRACTION),
    )
    test_fraction: float = field(
        default=0.2, metadata=doc("Share of respondents in the random test split.", FRACTION)
    )
    score_split: Literal["test", "valid"] = field(
        default="test",
        metadata=doc(
            "Respondents scored in the report's test columns: 'test', or 'valid' to tune settings (lr, rank) "
            "without looking at the test respondents; the report then says it shows validation numbers."
        ),
    )
    heldout_cells: dict[str, list[str | int]] = field(
        default_factory=dict,
        metadata=doc(
            "Held-out profile cells, field -> values; every combination is a cell whose respondents are "
            "never trained on (e.g. {race: [black], gender: [female]})."
        ),
    )
    n_train: int | None = field(
        default=None,
        metadata=doc("Training examples sampled (stratified by question); null = all.", AT_LEAST_1),
    )
    n_test: int | None = field(default=None, metadata=doc("Test examples sampled; null = all.", AT_LEAST_1))
    n_heldout: int | None = field(
        default=None, metadata=doc("Held-out-cell examples sampled; null = all.", AT_LEAST_1)
    )
    persona_in_prompt: bool = field(
        default=True,
        metadata=doc(
            "Put the profile sentence in the system prompt of trained methods (the paper's default)."
        ),
    )
    max_length: int = field(
        default=256,
        metadata=doc(
            "Tokens per example; a longer example is an error, never silently truncated.", AT_LEAST_1
        ),
    )
    option_order: OptionOrder = field(
        default="fixed",
        metadata=doc(
            "Order of each question's options in the prompt, lettered A, B, ... as shown: 'fixed' (the "
            "survey's order, benchmark-compatible), 'shuffled' (a permutation per example seeded by "
            "data.seed and its respondent and question, in training and scoring) or 'both' (trained "
            "shuffled, scored in the fixed and the reversed order with the probabilities averaged). "
            "Predictions keep the survey's option order; the orders shown are in their 'permutations' column."
        ),
    )

    def _check(self) -> None:
        if self.valid_fraction + self.test_fraction >= 1:
            raise ConfigError(
                f"data.valid_fraction={self.valid_fraction} + data.test_fraction={self.test_fraction}: "
                "must be below 1 to leave respondents to train on"
            )
        if self.score_split == "valid" and self.valid_fraction == 0:
            raise ConfigError("data.score_split='valid' needs data.valid_fraction > 0")
        for name, values in self.heldout_cells.items():
            if not values:
                raise ConfigError(f"data.heldout_cells.{name}={values!r}: must be a non-empty list of values")


@dataclass(frozen=True)
class TrainConfig(Checked):
    """Optimisation settings shared by every trainable method."""

    prefix: ClassVar[str] = "train."

    epochs: float = field(
        default=1.0, metadata=doc("Passes over the training examples (may be fractional).", POSITIVE)
    )
    max_steps: int | None = field(
        default=None, metadata=doc("Cap on optimizer steps; null = from epochs.", AT_LEAST_1)
    )
    batch_size: int = field(default=16, metadata=doc("Examples per device and micro-step.", AT_LEAST_1))
    grad_accum: int = field(default=1, metadata=doc("Micro-steps per optimizer step.", AT_LEAST_1))
    lr: float = field(
        default=2e-4,
        metadata=doc("Learning rate of the experts and of every parameter without its own.", POSITIVE),
    )
    router_lr: float | None = field(
        default=None, metadata=doc("Learning rate of the routers; null = lr.", POSITIVE)
    )
    projection_lr: float | None = field(
        default=None, metadata=doc("Learning rate of the demographic projection; null = lr.", POSITIVE)
    )
    weight_decay: float = field(
        default=0.0, metadata=doc("AdamW weight decay of matrices (never biases or norms).", NON_NEGATIVE)
    )
    schedule: Schedule = field(
        default="constant", metadata=doc("Learning-rate schedule (a transformers SchedulerType).")
    )
    warmup_ratio: float = field(
        default=0.0, metadata=doc("Warm-up share of the real number of optimizer steps.", FRACTION)
    )
    max_grad_norm: float = field(
        default=1.0, metadata=doc("Gradient-norm clipping; 0 disables it.", NON_NEGATIVE)
    )
    precision: Precision = field(
        default="auto",
        metadata=doc(
            "Compute precision: bf16 autocast, fp32, or auto (bf16 where bf16 is native: CUDA with bf16, a "
            "CPU with AVX512-BF16 or AMX; else fp32; see cuma/precision.py)."
        ),
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata=doc(
            "Recompute each decoder block's activations in backward instead of keeping them (non-reentrant; "
            "CuMA's routing re-entered): about one more forward pass of compute for a fraction of the "
            "activation memory (scripts/memory_estimate.py), and the same result."
        ),
    )
    seed: int = field(
        default=42,
        metadata=doc(
            "Seed of adapter initialisation, data order and dropout (cuma compare runs each of seeds).", SEED
        ),
    )
    save_every: int | None = field(
        default=None,
        metadata=doc(
            "Optimizer steps between checkpoints; null = only the final one (always saved).", AT_LEAST_1
        ),
    )
    keep_checkpoints: int | None = field(
        default=2,
        metadata=doc("Newest checkpoints kept in the run's checkpoints folder; null = all.", AT_LEAST_1),
    )
    log_every: int = field(default=10, metadata=doc("Optimizer steps between loss logs.", AT_LEAST_1))
    routing_stats_every: int = field(
        default=50, metadata=doc("Optimizer steps between expert-load and router-entropy logs.", AT_LEAST_1)
    )
    report_to: list[str] = field(
        default_factory=lambda: ["tensorboard"],
        metadata=doc("accelerate trackers to log to; [] or [none] logs nowhere."),
    )
    objective: Objective = field(
        default="sft",
        metadata=doc(
            "What the trainer optimises: sft (answer tokens), dpo (preference pairs, dpo.*) or grpo "
            "(sampled answers with rewards, grpo.*)."
        ),
    )
    init_from: str | None = field(
        default=None,
        metadata=doc(
            "The trained model a dpo or grpo run starts from: a model folder, or a run folder (its newest "
            "checkpoint); {method}, {seed} and {train_root} are filled in, so "
            "'{train_root}/{method}-seed{seed}' is each method's SFT run; null = fresh adapter weights."
        ),
    )

    def _check(self) -> None:
        if self.warmup_ratio > 0 and self.schedule in NO_WARMUP_SCHEDULES:
            raise ConfigError(
                f"train.schedule={self.schedule!r} ignores warm-up but "
                f"train.warmup_ratio={self.warmup_ratio}; use constant_with_warmup or set warmup_ratio=0"
            )


@dataclass(frozen=True)
class EvalConfig(Checked):
    """Scoring and metrics."""

    prefix: ClassVar[str] = "eval."

    batch_size: int = field(default=32, metadata=doc("Prompts per scoring batch.", AT_LEAST_1))
    padding_side: PaddingSide = field(
        default="left", metadata=doc("Padding side of scoring batches; both give the same numbers.")
    )
    precision: Precision = field(
        default="auto",
        metadata=doc(
            "Scoring precision: fp32, bf16 autocast (faster with bf16 units; probabilities differ by up to "
            "0.05), or auto (fp32 on every device; see cuma/precision.py)."
        ),
    )
    interference_examples: int | None = field(
        default=None,
        metadata=doc(
            "Training answers per main_group group behind the gradient-interference diagnostic of each "
            "trained adapter (first seed; cuma.evaluation.interference), e.g. 16: a forward and backward "
            "pass per answer, minutes per adapter on 2 CPU cores; null = not measured.",
            AT_LEAST_1,
        ),
    )
    routing_tokens: RoutingTokens = field(
        default="answer",
        metadata=doc("Routing topology from the answer position, or averaged over the whole prompt."),
    )
    few_shot: int = field(
        default=3, metadata=doc("Answered examples in the few-shot prompting baseline's prompt.", AT_LEAST_1)
    )
    group_fields: list[str] | None = field(
        default=None,
        metadata=doc(
            "Profile fields of the group metrics; null = every profile field of the dataset.", NON_EMPTY
        ),
    )
    main_group: str | None = field(
        default=None,
        metadata=doc(
            "Profile field of macro accuracy and the group figure; null = the first group field.", NON_EMPTY
        ),
    )
    cell_fields: list[str] | None = field(
        default=None,
        metadata=doc(
            "Fields whose value combination is the cell-majority baseline's cell; null = every group "
            "field (with many fields nearly every unseen respondent's cell is empty and falls back to the "
            "population).",
            NON_EMPTY,
        ),
    )
    bootstrap_resamples: int = field(
        default=1000,
        metadata=doc(
            "Resamples of the paired bootstrap over respondents behind the report's intervals "
            "(cuma.metrics.bootstrap).",
            Check("at least 2", lambda v: v >= 2),
        ),
    )
    confidence: float = field(
        default=0.95,
        metadata=doc("Coverage of the report's intervals.", Check("in (0, 1)", lambda v: 0 < v < 1)),
    )
    bootstrap_seed: int = field(
        default=0, metadata=doc("Seed of the bootstrap, permutation and noise-floor draws.", SEED)
    )
    noise_floor_draws: int = field(
        default=200,
        metadata=doc(
            "Simulated test samples behind the group-JS and sigma-inequity noise floors "
            "(cuma.metrics.noise_floor).",
            AT_LEAST_1,
        ),
    )


@dataclass(frozen=True)
class PrefixConfig(Checked):
    """Prefix-tuning settings (PEFT ``PrefixTuningConfig``), set as ``adapter_overrides.prefix.<field>``."""

    prefix: ClassVar[str] = "adapter_overrides.prefix."

    num_virtual_tokens: int = field(
        default=32,
        metadata=doc(
            "Virtual tokens prepended to every layer's keys and values (the authors' code used 32).",
            AT_LEAST_1,
        ),
    )
    prefix_projection: bool = field(
        default=False, metadata=doc("Reparametrise the prefix through an MLP, as PEFT can.")
    )


HALF = Check("in [0, 0.5)", lambda v: 0 <= v < 0.5)
AT_LEAST_2 = Check("at least 2", lambda v: v >= 2)


@dataclass(frozen=True)
class DPOConfig(Checked):
    """Direct preference optimisation (train.objective=dpo): the loss as TRL defines it, and the pairs."""

    prefix: ClassVar[str] = "dpo."

    beta: float = field(
        default=0.1, metadata=doc("Pull toward the reference; higher stays closer.", POSITIVE)
    )
    loss_type: DPOLoss = field(
        default="sigmoid",
        metadata=doc("sigmoid (the DPO paper), ipo (length-normalised log-ratios) or hinge (SLiC)."),
    )
    label_smoothing: float = field(
        default=0.0, metadata=doc("sigmoid only: assumed probability that a preference is flipped.", HALF)
    )
    pairing: Pairing = field(
        default="majority",
        metadata=doc(
            "Survey-derived pairs: the respondent's answer is chosen; rejected is every other option (all), "
            "one at random (random), or the training majority's answer when it differs (majority)."
        ),
    )
    lr: float | None = field(
        default=None,
        metadata=doc(
            "Learning rate of DPO runs in place of train.lr (DPO wants a far smaller one than SFT; tune it "
            "on validation, data.score_split=valid); null = train.lr.",
            POSITIVE,
        ),
    )
    reference: Reference = field(
        default="adapters-off",
        metadata=doc(
            "Reference log-probs: the same weights with the adapters disabled (no second model), or "
            "precomputed once from the starting weights (needed with init_from and for full fine-tuning)."
        ),
    )

    def _check(self) -> None:
        if self.label_smoothing and self.loss_type != "sigmoid":
            raise ConfigError(
                f"dpo.label_smoothing={self.label_smoothing}: applies to the sigmoid loss only, not "
                f"dpo.loss_type={self.loss_type!r}"
            )


@dataclass(frozen=True)
class GRPOConfig(Checked):
    """Group relative policy optimisation (train.objective=grpo) on survey prompts, as TRL's GRPOTrainer."""

    prefix: ClassVar[str] = "grpo."

    num_generations: int = field(
        default=4, metadata=doc("Sampled answers per prompt (the group G).", AT_LEAST_2)
    )
    max_new_tokens: int = field(
        default=4, metadata=doc("Tokens generated per answer (also dr_grpo's constant).", AT_LEAST_1)
    )
    temperature: float = field(default=1.0, metadata=doc("Sampling temperature of the rollouts.", POSITIVE))
    reward: Reward = field(
        default="exact-match",
        metadata=doc(
            "exact-match: 1 when the answer letter is the respondent's; cell-share: the share of the "
            "respondent's demographic cell (training data) giving that answer."
        ),
    )
    reward_cell_fields: list[str] | None = field(
        default=None, metadata=doc("Profile fields of the cell-share reward's cells; null = all fields.")
    )
    scale_rewards: ScaleRewards = field(
        default="group", metadata=doc("Divide advantages by the group's std (group), the batch's, or none.")
    )
    epsilon_low: float = field(default=0.2, metadata=doc("Ratio clipped below at 1 - epsilon_low.", FRACTION))
    epsilon_high: float = field(
        default=0.2, metadata=doc("Ratio clipped above at 1 + epsilon_high (DAPO: 0.28).", NON_NEGATIVE)
    )
    beta: float = field(
        default=0.0,
        metadata=doc("Weight of the k3 KL to the reference (adapters off); 0 = none.", NON_NEGATIVE),
    )
    loss_type: GRPOLoss = field(
        default="dapo",
        metadata=doc(
            "Token aggregation: grpo (per-answer mean, then mean), dr_grpo (sum / (answers x "
            "max_new_tokens)) or dapo (sum / tokens)."
        ),
    )
    max_failed_share: float = field(
        default=0.1, metadata=doc("Stop when more of a step's rewards than this share fail.", FRACTION)
    )
    lr: float | None = field(
        default=None,
        metadata=doc("Learning rate of GRPO runs in place of train.lr; null = train.lr.", POSITIVE),
    )


SHARE = Check("in [0, 1]", lambda v: 0 <= v <= 1)
OPEN_UNIT = Check("in (0, 1)", lambda v: 0 < v < 1)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
JUDGE_PROMPTS = ("default",)
"""Names of the built-in judge prompts (`cuma.judges.prompt.PROMPTS`)."""


@dataclass(frozen=True)
class JudgeConfig(Checked):
    """Settings of a judge; ``cuma.judges.build_judge`` turns them into one."""

    prefix: ClassVar[str] = "judge."

    kind: Literal["http", "local", "callable"] = field(
        default="http",
        metadata=doc("http: an OpenAI-compatible server; local: a causal LM; callable: a Python function."),
    )
    base_url: str | None = field(
        default=None,
        metadata=doc(
            "API root of the http judge, e.g. https://api.openai.com/v1 (without /chat/completions)."
        ),
    )
    model: str | None = field(
        default=None,
        metadata=doc(
            "Model name sent to the http judge; for a local judge, the alias, path or hub id to load."
        ),
    )
    api_key_env: str | None = field(
        default=None,
        metadata=doc("NAME of the environment variable holding the API key, never the key; null: no key."),
    )
    timeout_s: float = field(
        default=60.0, metadata=doc("Seconds before one http request times out.", POSITIVE)
    )
    max_retries: int = field(
        default=4,
        metadata=doc(
            "Repeats of a request after a 429, a 5xx, a timeout or a connection error.", NON_NEGATIVE
        ),
    )
    backoff_s: float = field(
        default=1.0, metadata=doc("First wait before a retry; doubled on each further retry.", NON_NEGATIVE)
    )
    max_backoff_s: float = field(
        default=60.0,
        metadata=doc("Longest wait before a retry, a server's Retry-After included.", NON_NEGATIVE),
    )
    max_requests: int | None = field(
        default=None,
        metadata=doc(
            "Requests the http judge may send in all, retries included; then verdicts fail.", AT_LEAST_1
        ),
    )
    max_concurrency: int = field(
        default=8, metadata=doc("Requests (or callable calls) in flight at once.", AT_LEAST_1)
    )
    max_tokens: int = field(default=16, metadata=doc("Longest answer the http judge may write.", AT_LEAST_1))
    batch_size: int = field(default=8, metadata=doc("Prompts per forward pass of a local judge.", AT_LEAST_1))
    cache_path: str | None = field(
        default=None,
        metadata=doc("JSONL file of http verdicts kept across runs; null: an in-memory cache only."),
    )
    both_orders: bool = field(
        default=True,
        metadata=doc("Judge each pair as (a, b) and (b, a); orders that disagree count as a tie."),
    )
    template: str = field(
        default="default",
        metadata=doc("Built-in judge prompt name, or a YAML file with 'user' and optional 'system' keys."),
    )
    max_failure_share: float = field(
        default=0.1,
        metadata=doc("Share of failed verdicts above which a run stops (check_failure_share).", SHARE),
    )
    progress: bool = field(default=False, metadata=doc("Show a progress bar over each batch of verdicts."))

    def __post_init__(self) -> None:
        if isinstance(self.cache_path, Path):
            object.__setattr__(self, "cache_path", str(self.cache_path))
        super().__post_init__()

    def _check(self) -> None:
        if self.kind == "http":
            if self.base_url is None or not self.base_url.startswith(("http://", "https://")):
                raise ConfigError(f"judge.base_url={self.base_url!r}: the http judge needs an http(s):// URL")
            if self.base_url.rstrip("/").endswith("/chat/completions"):
                raise ConfigError(
                    f"judge.base_url={self.base_url!r}: must be the API root (e.g. .../v1); "
                    "/chat/completions is added"
                )
            if not self.model:
                raise ConfigError(f"judge.model={self.model!r}: the http judge needs a model name")
        if self.api_key_env is not None and not _ENV_NAME.fullmatch(self.api_key_env):
            # The value is not echoed: it may be a key pasted in by mistake.
            raise ConfigError(
                "judge.api_key_env: must be the NAME of an environment variable (letters, digits, _), "
                "e.g. OPENAI_API_KEY, never the key itself"
            )
        if self.template not in JUDGE_PROMPTS and not Path(self.template).is_file():
            raise ConfigError(
                f"judge.template={self.template!r}: must be a built-in prompt ({', '.join(JUDGE_PROMPTS)}) "
                "or an existing YAML file"
            )


@dataclass(frozen=True)
class PreferenceEvalConfig(Checked):
    """Settings of the preference evaluations (CA-Acc and win-rate). Bad values raise ``ConfigError``."""

    prefix: ClassVar[str] = "preference."

    batch_size: int = field(
        default=8, metadata=doc("Prompts per forward pass (CA-Acc) or per generate call.", AT_LEAST_1)
    )
    max_length: int | None = field(
        default=None,
        metadata=doc(
            "Longest prompt in tokens; a longer one is an error naming the example. null: no limit.",
            AT_LEAST_1,
        ),
    )
    max_new_tokens: int = field(
        default=256, metadata=doc("Longest generated response in tokens.", AT_LEAST_1)
    )
    do_sample: bool = field(
        default=False, metadata=doc("Sample the responses; false decodes greedily (the default).")
    )
    temperature: float = field(default=1.0, metadata=doc("Sampling temperature (with do_sample).", POSITIVE))
    sample_seed: int = field(
        default=0,
        metadata=doc(
            "Seed of torch's generator before sampling (with do_sample); samples still depend on the "
            "batch a prompt falls in.",
            SEED,
        ),
    )
    judge_both_orders: bool = field(
        default=True,
        metadata=doc(
            "Judge each pair as (method, baseline) and as (baseline, method); orders that disagree are a "
            "tie. false puts the method's response first every time. A judge that already judges both "
            "orders (judge.both_orders) is not wrapped again."
        ),
    )
    choice_seed: int = field(
        default=0,
        metadata=doc(
            "Seed of CA-Acc's option permutation; with the example's id it fixes each example's order.", SEED
        ),
    )
    group_fields: list[str] | None = field(
        default=None,
        metadata=doc(
            "Profile fields of the per-group win-rates; null = every profile field of the prompts.",
            NON_EMPTY,
        ),
    )
    bootstrap_resamples: int = field(
        default=1000,
        metadata=doc(
            "Bootstrap resamples of the accuracy and win-rate intervals (cuma.metrics.bootstrap).",
            Check("at least 2", lambda v: v >= 2),
        ),
    )
    confidence: float = field(default=0.95, metadata=doc("Coverage of the bootstrap intervals.", OPEN_UNIT))
    bootstrap_seed: int = field(default=0, metadata=doc("Seed of the bootstrap resampling.", SEED))


@dataclass(frozen=True)
class ExperimentConfig(Checked):
    """One experiment: a dataset, a base model and the methods compared on it."""

    model: ModelConfig = field(default_factory=ModelConfig, metadata=doc("Base model and encoder."))
    data: DataConfig = field(default_factory=DataConfig, metadata=doc("Survey, split and sampling."))
    train: TrainConfig = field(default_factory=TrainConfig, metadata=doc("Optimisation."))
    eval: EvalConfig = field(default_factory=EvalConfig, metadata=doc("Scoring and metrics."))
    dpo: DPOConfig = field(
        default_factory=DPOConfig, metadata=doc("DPO loss and pairs (train.objective=dpo).")
    )
    grpo: GRPOConfig = field(default_factory=GRPOConfig, metadata=doc("GRPO rollouts and loss (grpo)."))
    judge: JudgeConfig = field(
        default_factory=lambda: JudgeConfig(kind="local", model="smollm2-135m-instruct"),
        metadata=doc("The judge of win-rates and of GRPO's judge reward (preference comparisons)."),
    )
    preference: PreferenceEvalConfig = field(
        default_factory=PreferenceEvalConfig,
        metadata=doc("CA-Acc and win-rate settings (preference comparisons)."),
    )
    methods: list[str] = field(
        default_factory=lambda: ["base", "persona", "lora", "cuma", "logistic"],
        metadata=doc(
            "Methods compared (cuma.methods.METHODS); the non-LLM references always run too.", NON_EMPTY
        ),
    )
    adapter_overrides: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata=doc(
            "Per-method settings, method -> field -> value: CuMAConfig fields (cuma.adapter) for adapter "
            "methods, PrefixConfig fields for prefix, e.g. {cuma: {rank: 64, alpha: 128}}."
        ),
    )
    method_lr: dict[str, float] = field(
        default_factory=dict,
        metadata=doc(
            "Learning rate per methods entry in place of its objective's (train.lr, dpo.lr or grpo.lr), "
            "e.g. {lora: 3.0e-4, cuma@dpo: 1.0e-5}; cuma sweep writes the ones it chose on validation. "
            "As with adapter_overrides, an entry that methods does not list is unused (a run of fewer "
            "methods keeps the file's rates); every name must be a known method."
        ),
    )
    seeds: list[int] = field(
        default_factory=lambda: [42],
        metadata=doc("Training seeds; every trained method runs once per seed.", NON_EMPTY),
    )
    data_seeds: list[int] = field(
        default_factory=list,
        metadata=doc(
            "Data seeds the comparison repeats over: each draws the respondent split and the samples again "
            "(data.seed in turn), so the spread includes the data sample's; [] = data.seed alone."
        ),
    )
    output_dir: str = field(
        default="runs/default",
        metadata=doc("Report directory (training runs go to <output_dir>/train).", NON_EMPTY),
    )

    def _check(self) -> None:
        for seed in self.seeds:
            if not SEED.test(seed):
                raise ConfigError(f"seeds={self.seeds!r}: each seed must be {SEED.rule}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds={self.seeds!r}: must not repeat a seed")
        if len(set(self.data_seeds)) != len(self.data_seeds) or not all(map(SEED.test, self.data_seeds)):
            raise ConfigError(f"data_seeds={self.data_seeds!r}: distinct seeds, each {SEED.rule}")
        for entry, lr in self.method_lr.items():
            if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
                raise ConfigError(f"method_lr.{entry}={lr!r}: must be a positive number")

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
        """The config file at ``path`` with ``overrides`` on top; errors name the file or the overrides."""
        raw = read_yaml(path, "config file")
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"expected a mapping of config fields, got {type(raw).__name__}", str(path))
        return cls.from_dict(raw, source=str(path)).with_overrides(overrides or [])

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "<dict>") -> ExperimentConfig:
        """Build from a nested mapping (what `to_dict` returns); unknown fields are errors."""
        try:
            return _build(raw)
        except ConfigError as err:
            raise err.at(source) from None

    def with_overrides(self, overrides: list[str]) -> ExperimentConfig:
        """A copy with each ``section.field=value`` applied, in order; values are YAML."""
        raw = self.to_dict()
        for item in overrides:
            key, sep, text = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"override {item!r} is not of the form section.field=value", OVERRIDES)
            *parents, leaf = key.split(".")
            if not parents and leaf in _SECTIONS:
                raise ConfigError(
                    f"override {item!r} would replace every {leaf} field; set them as {leaf}.field=value",
                    OVERRIDES,
                )
            node = raw
            for part in parents:
                # A new key becomes an entry of a mapping field, or an unknown field that _build names.
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"override {item!r}: {part!r} is not a config section", OVERRIDES)
            try:
                node[leaf] = parse_yaml(text)
            except yaml.YAMLError as err:
                problem = getattr(err, "problem", None) or str(err).splitlines()[0]
                raise ConfigError(f"override {item!r}: not a YAML value ({problem})", OVERRIDES) from None
        return self.from_dict(raw, source=OVERRIDES)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def data_seed_list(self) -> list[int]:
        """The data seeds a comparison runs: ``data_seeds``, or ``data.seed`` alone."""
        return list(self.data_seeds) or [self.data.seed]

    def with_data_seed(self, seed: int) -> ExperimentConfig:
        return dataclasses.replace(self, data=dataclasses.replace(self.data, seed=seed))

    @property
    def objective_train(self) -> TrainConfig:
        """``train`` as the trainer runs it for ``train.objective``: ``dpo.lr`` or ``grpo.lr`` replaces
        ``train.lr`` when set (``router_lr`` and ``projection_lr``, when set, are kept as they are)."""
        own = {"dpo": self.dpo.lr, "grpo": self.grpo.lr}.get(self.train.objective)
        return self.train if own is None else dataclasses.replace(self.train, lr=own)


_SECTIONS: dict[str, type[Checked]] = {
    "model": ModelConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "dpo": DPOConfig,
    "grpo": GRPOConfig,
    "judge": JudgeConfig,
    "preference": PreferenceEvalConfig,
}


def config_help() -> str:
    """Every ``section.field`` with its type, default, range and documentation, for ``--help``."""
    lines = [
        "config fields (in the YAML file, or as section.field=value after the options):",
        *field_docs(ExperimentConfig),
        *field_docs(PrefixConfig, PrefixConfig.prefix),
    ]
    return "\n".join(lines)


def _build(raw: Mapping[str, Any]) -> ExperimentConfig:
    _refuse_unknown(ExperimentConfig, raw, "")
    values = dict(raw)
    for name, section in _SECTIONS.items():
        if name not in values:
            continue
        if not isinstance(values[name], dict):
            raise ConfigError(f"{name}={values[name]!r}: expected a mapping of {name}.* fields")
        _refuse_unknown(section, values[name], section.prefix)
        values[name] = section(**values[name])
    return ExperimentConfig(**values)


def _refuse_unknown(cls: type, raw: Mapping[str, Any], prefix: str) -> None:
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        names = ", ".join(prefix + str(k) for k in unknown)
        raise ConfigError(f"unknown config field(s) {names}; known: {', '.join(known)}")
