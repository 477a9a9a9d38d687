"""What a run reports: a tqdm bar, tracker logs (TensorBoard by default) and routing statistics."""

from __future__ import annotations

import importlib.util
import math
from typing import Any

import torch

from cuma.config import TrainConfig


def routing_stats(weights: dict[str, torch.Tensor], attention_mask: torch.Tensor) -> dict[str, float]:
    """Expert load and router entropy per layer from one recorded micro-batch (real tokens only).

    ``load_e`` is expert e's share of the routing weight (1/N each when balanced); ``entropy`` is the
    mean per-token entropy of the weights in nats. Two summaries follow: the mean entropy over layers
    and the worst imbalance, max load times N (1 when balanced, N when one expert takes everything).
    """
    mask = attention_mask.detach().bool().cpu()
    stats: dict[str, float] = {}
    entropies, imbalances = [], []
    for layer, w in weights.items():
        if w.shape[:2] != mask.shape:
            raise ValueError(
                f"routing weights of {layer} have shape {tuple(w.shape)}, batch is {tuple(mask.shape)}"
            )
        tokens = w[mask].float()
        load = tokens.sum(0) / tokens.sum().clamp_min(1e-12)
        entropy = float(-(tokens * tokens.clamp_min(1e-12).log()).sum(-1).mean())
        stats[f"routing/{layer}/entropy"] = entropy
        for expert, share in enumerate(load.tolist()):
            stats[f"routing/{layer}/load_{expert}"] = share
        entropies.append(entropy)
        imbalances.append(float(load.max()) * load.numel())
    if entropies:
        stats["routing/mean_entropy"] = sum(entropies) / len(entropies)
        stats["routing/max_imbalance"] = max(imbalances)
    return stats


def trackers(config: TrainConfig) -> list[str]:
    """``train.report_to`` without "none"; an empty list disables tracking.

    TensorBoard is an optional extra, so asking for it without the package is an error naming the extra.
    """
    names = [name for name in config.report_to if name != "none"]
    if "tensorboard" in names and importlib.util.find_spec("tensorboard") is None:
        raise ModuleNotFoundError(
            "train.report_to lists tensorboard, which is not installed: pip install 'cuma[tensorboard]' "
            "or set train.report_to=[]"
        )
    return names


def hparams(config: TrainConfig, method: str) -> dict[str, Any]:
    """The run's settings flattened to the scalar types TensorBoard's hparams accept."""
    flat: dict[str, Any] = {"method": method}
    for key, value in vars(config).items():
        flat[key] = value if isinstance(value, int | float | str | bool) else str(value)
    return flat


def postfix(logs: dict[str, float]) -> dict[str, str]:
    """The few numbers worth a glance on the progress bar."""
    shown = {"loss": f"{logs['loss']:.4f}", "aux": f"{logs['aux_loss']:.4f}", "lr": f"{logs['lr']:.2e}"}
    if math.isfinite(logs.get("tokens_per_s", math.nan)):
        shown["tok/s"] = f"{logs['tokens_per_s']:.0f}"
    return shown
