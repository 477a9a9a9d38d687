"""`build_judge`: a `JudgeConfig` (plus the objects a config cannot hold) -> a ready judge."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cuma.config import JudgeConfig
from cuma.data.profiles import ProfileTemplate
from cuma.errors import ConfigError
from cuma.judges.base import Judge
from cuma.judges.both_orders import BothOrdersJudge
from cuma.judges.callable_judge import CallableJudge, JudgeFn
from cuma.judges.http_judge import HTTPJudge
from cuma.judges.prompt import load_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def build_judge(
    config: JudgeConfig,
    *,
    fn: JudgeFn | None = None,
    model: PreTrainedModel | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    profile_template: ProfileTemplate | None = None,
) -> Judge:
    """The judge ``config`` describes, wrapped in `BothOrdersJudge` when ``config.both_orders``.

    Args:
        fn: the function of a "callable" judge (required for that kind).
        model, tokenizer: a loaded LM for a "local" judge; when absent, ``config.model`` is loaded
            with ``cuma.models.load_base_model``.
        profile_template: how profile mappings are rendered in the prompt (default ``KEY_VALUE``).
    """
    prompt = load_prompt(config.template, profile_template)
    if (fn is not None) != (config.kind == "callable"):
        raise ValueError(
            f"a judge function is given exactly when judge.kind is 'callable'; kind is {config.kind!r}"
        )
    if (model is not None or tokenizer is not None) and config.kind != "local":
        raise ValueError(
            f"a model and tokenizer are given only when judge.kind is 'local'; kind is {config.kind!r}"
        )
    if config.kind == "http":
        judge: Judge = HTTPJudge(config, prompt)
    elif config.kind == "local":
        if (model is None) != (tokenizer is None):
            raise ValueError(
                "a local judge needs both a model and its tokenizer, or neither (judge.model is loaded)"
            )
        # torch and transformers load only for a local judge.
        from cuma.judges.local_judge import LocalJudge
        from cuma.models import load_base_model

        if model is None:
            if not config.model:
                raise ConfigError(
                    f"judge.model={config.model!r}: must name the model of a local judge when none is given"
                )
            model, tokenizer = load_base_model(config.model)
        judge = LocalJudge(model, tokenizer, prompt, batch_size=config.batch_size, progress=config.progress)
    else:
        judge = CallableJudge(fn, max_concurrency=config.max_concurrency, progress=config.progress)
    return BothOrdersJudge(judge) if config.both_orders else judge
