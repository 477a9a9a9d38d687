"""`CuMAConfig`: every mixture-of-LoRA variant of the paper is a setting of this one PEFT config.

It is a ``peft.PeftConfig``, so ``save_pretrained`` writes PEFT's ``adapter_config.json`` with
``"peft_type": "CUMA"`` and ``PeftConfig.from_pretrained(dir)`` reads it back (after ``import cuma``).
Besides the adapter's shape it records the frozen encoder that produced ``demographic_embeds`` and the
profile template, so an adapter folder says how to build its own inputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

from peft import PeftConfig

from cuma.adapter.registration import PEFT_NAME, _extend_peft_type

ROUTINGS = ("topk", "soft", "none")
TOP_K_WEIGHTS = ("normalize", "softmax-of-probs")
DISPATCHES = ("auto", "dense", "sparse")
ROUTER_INPUTS = ("hidden", "demographic")
ENCODER_KEYS = ("name_or_path", "pooling", "max_length", "normalize", "dim")


@dataclass
class CuMAConfig(PeftConfig):
    """Settings of a mixture-of-LoRA adapter: ``y = W0 x + b + scaling * sum_e g_e(x, d) B_e A_e x``.

    Invalid combinations raise ``ValueError`` at construction, so a bad run fails before training.
    """

    preset: str | None = field(
        default=None,
        metadata={"help": "The named variant these settings started from (from_preset); a record only."},
    )
    rank: int = field(default=8, metadata={"help": "LoRA rank r of every expert."})
    alpha: float = field(
        default=16.0,
        metadata={"help": "LoRA alpha; the expert sum is scaled by alpha / rank as in PEFT."},
    )
    dropout: float = field(
        default=0.0,
        metadata={"help": "Dropout applied once to the layer input before the expert down-projections."},
    )
    num_experts: int = field(
        default=8,
        metadata={"help": "Number of LoRA experts N per adapted linear (1 with routing='none')."},
    )
    top_k: int | None = field(
        default=2,
        metadata={"help": "Experts used per token under routing='topk'; None for 'soft' and 'none'."},
    )
    routing: Literal["topk", "soft", "none"] = field(
        default="topk",
        metadata={
            "help": (
                "'topk': the top-k of the router softmax; 'soft': the full softmax over all experts; 'none': "
                "no router, the single expert always has weight 1 (plain LoRA)."
            )
        },
    )
    top_k_weights: Literal["normalize", "softmax-of-probs"] = field(
        default="normalize",
        metadata={
            "help": (
                "How top-k weights are renormalised: 'normalize' is p_i / sum of the selected p; "
                "'softmax-of-probs' is the authors' code's softmax over the selected probabilities (parity "
                "runs only; see docs/design.md). With top_k=1 the gate is the raw probability p_i, as in the "
                "Switch Transformer, so the router keeps a gradient."
            )
        },
    )
    shared_a: bool = field(
        default=False,
        metadata={
            "help": ("One down-projection A shared by all experts, each owning only its B (HydraLoRA).")
        },
    )
    dispatch: Literal["auto", "dense", "sparse"] = field(
        default="auto",
        metadata={
            "help": (
                "How the layer computes its experts: 'dense' (all experts, two GEMMs), 'sparse' (only each "
                "token's top-k, grouped by expert) or 'auto' (sparse where it is cheaper: see "
                "cuma/adapter/dispatch.py). Changes speed only, never the result beyond float rounding."
            )
        },
    )
    router_inputs: tuple[str, ...] = field(
        default_factory=lambda: ("hidden", "demographic"),
        metadata={
            "help": (
                "What the router reads: 'hidden' (the layer input) and/or 'demographic' (the projected "
                "profile embedding). Empty exactly when routing='none'."
            )
        },
    )
    router_hidden_size: int = field(
        default=256,
        metadata={"help": "Width of the router MLP's hidden layers (unused with 1 layer)."},
    )
    router_layers: int = field(
        default=2,
        metadata={
            "help": ("Linear layers in the router: 1 is a linear gate, 2 is in -> hidden -> ReLU -> N.")
        },
    )
    router_dropout: float = field(
        default=0.0,
        metadata={"help": "Dropout on the router's hidden-state input and between its layers."},
    )
    router_sharing: tuple[tuple[str, ...], ...] = field(
        default_factory=lambda: (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj")),
        metadata={
            "help": (
                "Groups of target names that read the same input; targets of one group inside one block "
                "share one router, computed once per forward."
            )
        },
    )
    target_modules: tuple[str, ...] = field(
        default_factory=lambda: ("q_proj", "v_proj"),
        metadata={
            "help": (
                "Names of the nn.Linear modules to adapt, matched against the end of each module's full name "
                "(Llama, Qwen2/3 and SmolLM2 use q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
                "down_proj)."
            )
        },
    )
    load_balancing_weight: float = field(
        default=0.01,
        metadata={"help": "Weight of each router's Switch-style load-balancing loss in aux_loss."},
    )
    router_z_loss_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of the router z-loss (mean squared logsumexp) in aux_loss."},
    )
    demographic_input_dim: int = field(
        default=384,
        metadata={"help": "Size of the raw frozen-encoder embedding passed as demographic_embeds."},
    )
    demographic_projection_layers: int = field(
        default=0,
        metadata={
            "help": (
                "Trainable projection of the raw embedding: 0 (identity), 1 (linear) or 2 "
                "(linear-GELU-linear)."
            )
        },
    )
    demographic_dim: int | None = field(
        default=None,
        metadata={"help": "Output size of the projection; None keeps demographic_input_dim."},
    )
    encoder: dict[str, Any] | None = field(
        default=None,
        metadata={
            "help": (
                "The frozen encoder that produced demographic_embeds: name_or_path, pooling, max_length, "
                "normalize and dim (cuma.encoder.DemographicEncoder.identity()); saved with the adapter, "
                "checked on load."
            )
        },
    )
    profile_template: dict[str, Any] | None = field(
        default=None,
        metadata={
            "help": (
                "The ProfileTemplate (cuma.data.profiles) that renders a profile into the text the encoder "
                "reads."
            )
        },
    )
    exclude_modules: tuple[str, ...] | None = field(
        default=None,
        metadata={"help": "Module names never adapted even if they match."},
    )
    modules_to_save: list[str] | None = field(
        default=None,
        metadata={"help": "Extra base modules trained in full and saved (PEFT's)."},
    )

    # Read by PEFT's module matching; CuMA adapts modules, never bare parameters.
    target_parameters: ClassVar[None] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = _extend_peft_type()
        if self.task_type is None:
            self.task_type = "CAUSAL_LM"
        # Lists arrive from JSON/YAML; tuples keep the settings comparable.
        self.router_inputs = tuple(self.router_inputs)
        self.target_modules = tuple(self.target_modules)
        self.router_sharing = tuple(tuple(group) for group in self.router_sharing)
        if self.exclude_modules is not None:
            self.exclude_modules = tuple(self.exclude_modules)
        self._validate()

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    @property
    def has_router(self) -> bool:
        return self.routing != "none"

    @property
    def uses_demographics(self) -> bool:
        return "demographic" in self.router_inputs

    @property
    def projected_demographic_dim(self) -> int:
        return self.demographic_dim if self.demographic_dim is not None else self.demographic_input_dim

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> CuMAConfig:
        """The named variant (`PRESETS`), with any field replaced by ``overrides``."""
        if name not in PRESETS:
            raise ValueError(f"unknown CuMA preset {name!r}; expected one of {sorted(PRESETS)}")
        cls._check_field_names(overrides, f" in overrides for preset {name!r}")
        return cls(**{**PRESETS[name], "preset": name, **overrides})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CuMAConfig:
        cls._check_field_names(values)
        return cls(**values)

    @classmethod
    def adapter_field_names(cls) -> list[str]:
        """The CuMA settings, without PEFT's bookkeeping fields (peft_type, revision, ...)."""
        own = {f.name for f in fields(PeftConfig)}
        return [f.name for f in fields(cls) if f.name not in own]

    @classmethod
    def _check_field_names(cls, names: Iterable[str], where: str = "") -> None:
        unknown = sorted(set(names) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown CuMAConfig field(s) {unknown}{where}")

    def settings(self) -> dict[str, Any]:
        """The CuMA settings as plain JSON values (what a report or a checkpoint identity records)."""
        values = self.to_dict()
        return {name: _plain(values[name]) for name in self.adapter_field_names()}

    def _validate(self) -> None:
        def fail(name: str, problem: str) -> None:
            raise ValueError(f"CuMAConfig.{name}={getattr(self, name)!r}: {problem}")

        for name in ("rank", "num_experts", "router_layers", "router_hidden_size", "demographic_input_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(name, "must be an integer of at least 1")
        if self.alpha <= 0:
            fail("alpha", "must be positive")
        for name in ("dropout", "router_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                fail(name, "must be in [0, 1)")
        if self.routing not in ROUTINGS:
            fail("routing", f"expected one of {ROUTINGS}")
        if self.top_k_weights not in TOP_K_WEIGHTS:
            fail("top_k_weights", f"expected one of {TOP_K_WEIGHTS}")
        if self.dispatch not in DISPATCHES:
            fail("dispatch", f"expected one of {DISPATCHES}")
        if self.routing == "topk":
            if self.top_k is None or not 1 <= self.top_k <= self.num_experts:
                fail("top_k", f"top-k routing needs 1 <= top_k <= num_experts ({self.num_experts})")
        elif self.top_k is not None:
            fail("top_k", f"routing={self.routing!r} uses no top-k; set top_k=None")
        if self.routing == "none":
            if self.num_experts != 1:
                fail("num_experts", "routing='none' (plain LoRA) needs exactly one expert")
            if self.router_inputs:
                fail("router_inputs", "routing='none' has no router; set router_inputs=()")
        else:
            if not self.router_inputs:
                fail("router_inputs", f"routing={self.routing!r} needs at least one of {ROUTER_INPUTS}")
            if self.num_experts < 2:
                fail("num_experts", f"routing={self.routing!r} needs at least 2 experts")
        bad_inputs = [x for x in self.router_inputs if x not in ROUTER_INPUTS]
        if bad_inputs or len(set(self.router_inputs)) != len(self.router_inputs):
            fail("router_inputs", f"expected distinct entries from {ROUTER_INPUTS}")
        grouped = [name for group in self.router_sharing for name in group]
        if len(set(grouped)) != len(grouped):
            fail("router_sharing", "a module name may appear in at most one sharing group")
        if not self.target_modules or not all(isinstance(t, str) and t for t in self.target_modules):
            fail("target_modules", "needs at least one non-empty module name")
        for name in ("load_balancing_weight", "router_z_loss_weight"):
            if getattr(self, name) < 0:
                fail(name, "must be non-negative")
        if self.demographic_projection_layers not in (0, 1, 2):
            fail("demographic_projection_layers", "expected 0, 1 or 2")
        if self.demographic_dim is not None:
            if self.demographic_dim < 1:
                fail("demographic_dim", "must be at least 1")
            if self.demographic_projection_layers == 0 and self.demographic_dim != self.demographic_input_dim:
                fail("demographic_dim", "an identity projection (0 layers) keeps demographic_input_dim")
        if self.encoder is not None:
            missing = [key for key in ENCODER_KEYS if key not in self.encoder]
            if missing:
                fail("encoder", f"missing {missing}; expected the keys {list(ENCODER_KEYS)}")
            if self.encoder["dim"] != self.demographic_input_dim:
                fail(
                    "encoder",
                    f"dim {self.encoder['dim']} != demographic_input_dim {self.demographic_input_dim}",
                )


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


PRESETS: dict[str, dict[str, Any]] = {
    # PEFT-equivalent LoRA: one expert, no router.
    "lora": {
        "num_experts": 1,
        "top_k": None,
        "routing": "none",
        "router_inputs": (),
        "load_balancing_weight": 0.0,
    },
    # HydraLoRA (Tian et al. 2024): shared A, N B-heads, a linear gate on the hidden state, all heads
    # weighted by the softmax as in the HydraLoRA paper.
    "hydralora": {
        "shared_a": True,
        "router_inputs": ("hidden",),
        "routing": "soft",
        "top_k": None,
        "router_layers": 1,
    },
    # MixLoRA (Li et al. 2024): separate A and B per expert, a linear top-2 gate on the hidden state.
    "mixlora": {"router_inputs": ("hidden",), "router_layers": 1},
    # CuMA: the MLP router reads the hidden state and the profile embedding; top-2 of 8 experts.
    "cuma": {},
    # CuMA with every expert weighted by the full softmax.
    "cuma-soft": {"routing": "soft", "top_k": None},
    # Routing from the profile alone: one expert mixture per profile, the same for all its tokens.
    "demographic-only": {"router_inputs": ("demographic",)},
    # The CuMA router with its demographic input removed.
    "no-demographic": {"router_inputs": ("hidden",)},
}
"""Preset name -> the fields it sets on top of CuMAConfig's defaults."""

__all__ = ["PEFT_NAME", "PRESETS", "CuMAConfig"]
