"""`CuMAConfig`: every mixture-of-LoRA variant of the paper is a setting of this one dataclass."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

ROUTINGS = ("topk", "soft", "none")
TOP_K_WEIGHTS = ("normalize", "softmax-of-probs")
ROUTER_INPUTS = ("hidden", "demographic")


@dataclass(frozen=True)
class CuMAConfig:
    """Settings of a mixture-of-LoRA adapter: ``y = W0 x + b + scaling * sum_e g_e(x, d) B_e A_e x``.

    Invalid combinations raise ``ValueError`` at construction, so a bad run fails before training.
    """

    rank: int = 8
    """LoRA rank r of every expert."""
    alpha: float = 16.0
    """LoRA alpha; the expert sum is scaled by ``alpha / rank`` as in PEFT."""
    dropout: float = 0.0
    """Dropout applied once to the layer input before the expert down-projections."""
    num_experts: int = 8
    """Number of LoRA experts N per adapted linear (1 with ``routing="none"`` is plain LoRA)."""
    top_k: int | None = 2
    """Experts used per token under ``routing="topk"``; must be None for "soft" and "none"."""
    routing: Literal["topk", "soft", "none"] = "topk"
    """"topk": top-k of the router softmax; "soft": the full softmax over all experts;
    "none": no router, the single expert always has weight 1."""
    top_k_weights: Literal["normalize", "softmax-of-probs"] = "normalize"
    """How top-k weights are renormalised: "normalize" is p_i / sum of the selected p;
    "softmax-of-probs" is the reference code's softmax over the selected probabilities (parity runs only)."""
    shared_a: bool = False
    """One down-projection A shared by all experts, each expert owning only its B (HydraLoRA)."""
    router_inputs: tuple[str, ...] = ("hidden", "demographic")
    """What the router reads: "hidden" (the layer input) and/or "demographic" (the projected profile
    embedding). Empty exactly when ``routing="none"``."""
    router_hidden_size: int = 256
    """Width of the router MLP's hidden layers (unused when ``router_layers == 1``)."""
    router_layers: int = 2
    """Linear layers in the router: 1 is a linear gate, 2 is in -> hidden -> ReLU -> N, and so on."""
    router_dropout: float = 0.0
    """Dropout on the router's hidden-state input and between its layers."""
    router_sharing: tuple[tuple[str, ...], ...] = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
    """Groups of target names that read the same input; targets of one group inside one block share one
    router, computed once per forward."""
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    """Names of the nn.Linear modules to adapt, matched against the end of each module's full name
    (Llama, Qwen2/3 and SmolLM2 use q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)."""
    load_balancing_weight: float = 0.01
    """Weight of the Switch-style load-balancing loss of each router in ``aux_loss``."""
    router_z_loss_weight: float = 0.0
    """Weight of the router z-loss (mean squared logsumexp of the logits) in ``aux_loss``."""
    demographic_input_dim: int = 384
    """Size of the raw frozen-encoder embedding passed as ``demographic_embeds`` (384 for MiniLM-L6)."""
    demographic_projection_layers: int = 0
    """Trainable projection of the raw embedding: 0 (identity), 1 (linear) or 2 (linear-GELU-linear)."""
    demographic_dim: int | None = None
    """Output size of the projection; None keeps ``demographic_input_dim`` (required when 0 layers)."""

    def __post_init__(self) -> None:
        # Lists arrive from JSON/YAML; keep the dataclass hashable and comparable.
        object.__setattr__(self, "router_inputs", tuple(self.router_inputs))
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        object.__setattr__(self, "router_sharing", tuple(tuple(group) for group in self.router_sharing))
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
        """The named variant, with any field replaced by ``overrides``."""
        if name not in PRESETS:
            raise ValueError(f"unknown CuMA preset {name!r}; expected one of {sorted(PRESETS)}")
        cls._check_field_names(overrides, f" in overrides for preset {name!r}")
        return replace(PRESETS[name], **overrides)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CuMAConfig:
        cls._check_field_names(values)
        return cls(**values)

    @classmethod
    def _check_field_names(cls, names: Iterable[str], where: str = "") -> None:
        unknown = sorted(set(names) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown CuMAConfig field(s) {unknown}{where}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _validate(self) -> None:
        def fail(field: str, problem: str) -> None:
            raise ValueError(f"CuMAConfig.{field}={getattr(self, field)!r}: {problem}")

        if self.rank < 1:
            fail("rank", "must be at least 1")
        if self.alpha <= 0:
            fail("alpha", "must be positive")
        for name in ("dropout", "router_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                fail(name, "must be in [0, 1)")
        if self.num_experts < 1:
            fail("num_experts", "must be at least 1")
        if self.routing not in ROUTINGS:
            fail("routing", f"expected one of {ROUTINGS}")
        if self.top_k_weights not in TOP_K_WEIGHTS:
            fail("top_k_weights", f"expected one of {TOP_K_WEIGHTS}")
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
        if self.router_layers < 1:
            fail("router_layers", "must be at least 1")
        if self.router_hidden_size < 1:
            fail("router_hidden_size", "must be at least 1")
        grouped = [name for group in self.router_sharing for name in group]
        if len(set(grouped)) != len(grouped):
            fail("router_sharing", "a module name may appear in at most one sharing group")
        if not self.target_modules or not all(isinstance(t, str) and t for t in self.target_modules):
            fail("target_modules", "needs at least one non-empty module name")
        for name in ("load_balancing_weight", "router_z_loss_weight"):
            if getattr(self, name) < 0:
                fail(name, "must be non-negative")
        if self.demographic_input_dim < 1:
            fail("demographic_input_dim", "must be at least 1")
        if self.demographic_projection_layers not in (0, 1, 2):
            fail("demographic_projection_layers", "expected 0, 1 or 2")
        if self.demographic_dim is not None:
            if self.demographic_dim < 1:
                fail("demographic_dim", "must be at least 1")
            if self.demographic_projection_layers == 0 and self.demographic_dim != self.demographic_input_dim:
                fail("demographic_dim", "an identity projection (0 layers) keeps demographic_input_dim")


_CUMA = CuMAConfig()

PRESETS: dict[str, CuMAConfig] = {
    # PEFT-equivalent LoRA: one expert, no router.
    "lora": replace(
        _CUMA, num_experts=1, top_k=None, routing="none", router_inputs=(), load_balancing_weight=0.0
    ),
    # HydraLoRA (Tian et al. 2024): shared A, N B-heads, a linear gate on the hidden state, all heads
    # weighted by the softmax as in the HydraLoRA paper.
    "hydralora": replace(
        _CUMA, shared_a=True, router_inputs=("hidden",), routing="soft", top_k=None, router_layers=1
    ),
    # MixLoRA (Li et al. 2024): separate A and B per expert, a linear top-2 gate on the hidden state.
    "mixlora": replace(_CUMA, router_inputs=("hidden",), router_layers=1),
    # CuMA: the MLP router reads the hidden state and the profile embedding; top-2 of 8 experts.
    "cuma": _CUMA,
    # CuMA with every expert weighted by the full softmax.
    "cuma-soft": replace(_CUMA, routing="soft", top_k=None),
    # Routing from the profile alone: one expert mixture per profile, the same for all its tokens.
    "demographic-only": replace(_CUMA, router_inputs=("demographic",)),
    # The CuMA router with its demographic input removed.
    "no-demographic": replace(_CUMA, router_inputs=("hidden",)),
}
