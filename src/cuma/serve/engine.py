"""`Engine`: a model, its tokenizer and its profile codec, running batches of jobs on one thread.

The engine knows nothing about HTTP: the app turns requests into jobs, the micro-batcher groups them,
and `Engine.run` executes one group with one ``generate`` (or forward) call, each row routed by its
own profile through ``demographic_embeds``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, StoppingCriteriaList

from cuma.data.collate import pad_token_rows
from cuma.data.errors import DataError
from cuma.data.profiles import KEY_VALUE, ProfileTemplate
from cuma.data.render import letter_token_ids, render_prompt
from cuma.evaluation.scoring import answer_logits
from cuma.serve.decoding import RowDecoder, RowTracker
from cuma.serve.errors import invalid
from cuma.serve.jobs import ChoiceResult, GenerationJob, Job, ScoreJob
from cuma.serve.profiles import ProfileCodec, ProfileEncoder


def demographic_configs(model: Any) -> list[Any]:
    """The adapter configs of ``model`` whose router reads demographics (then every row needs a profile).

    A PEFT model keeps its adapter configs in ``peft_config``; a bare base model has none that do.
    """
    configs = getattr(model, "peft_config", None)
    candidates = configs.values() if isinstance(configs, Mapping) else [getattr(model, "config", None)]
    return [config for config in candidates if getattr(config, "uses_demographics", False)]


def reads_profiles(model: Any) -> bool:
    return bool(demographic_configs(model))


def base_model_config(model: Any) -> Any:
    """The wrapped transformers model's config, whatever adapter wraps it."""
    if hasattr(model, "get_base_model"):
        return model.get_base_model().config
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "max_position_embeddings"):
        return config
    return model.base_model.config


class Engine:
    """Everything needed to answer requests for one model.

    Args:
        model: a causal LM, a CuMA adapter model or a PEFT model, in eval mode.
        tokenizer: its tokenizer (with a chat template for ``/v1/chat/completions``).
        encoder: the adapter's frozen demographic encoder; required when the model routes on profiles.
        template: renders request profile mappings (default ``KEY_VALUE``).
        name: the model id clients send and ``/v1/models`` lists.
        profile_fields: profile fields a request may name (default: the template's parts).
        profile_cache_size: most profile encodings kept.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        encoder: ProfileEncoder | None = None,
        template: ProfileTemplate | None = None,
        *,
        name: str = "cuma",
        profile_fields: Sequence[str] | None = None,
        profile_cache_size: int = 10_000,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        routed = demographic_configs(model)
        self.reads_profiles = bool(routed)
        if self.reads_profiles and encoder is None:
            raise ValueError(f"model {name!r} routes on demographic profiles; give the Engine its encoder")
        dims = {config.demographic_input_dim for config in routed}
        if encoder is not None and routed and dims != {encoder.dim}:
            raise ValueError(
                f"model {name!r} reads demographic vectors of size {sorted(dims)}, "
                f"its encoder gives {encoder.dim}"
            )
        self.profiles = (
            ProfileCodec(encoder, template or KEY_VALUE, profile_fields, profile_cache_size)
            if encoder is not None and self.reads_profiles
            else None
        )
        self.device = next(model.parameters()).device
        self.context_length = int(base_model_config(model).max_position_embeddings)
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        eos_ids = {*(eos if isinstance(eos, list) else [eos]), tokenizer.eos_token_id} - {None}
        if not eos_ids:
            raise ValueError(f"model {name!r} has no end-of-sequence token in its config or tokenizer")
        self.eos_token_ids = frozenset(eos_ids)
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos_ids)

    @classmethod
    def from_adapter_dir(
        cls,
        adapter_dir: str | Path,
        base: str | None = None,
        *,
        name: str | None = None,
        dtype: str | None = None,
        device: str | None = None,
    ) -> Engine:
        """The engine for a saved adapter folder on its base model (``base``, else the one it names).

        A CuMA folder is loaded strictly with `cuma.adapter.load_cuma_model` (weights checksum, base
        model identity) and brings its own encoder and template (`DemographicEncoder.from_adapter`);
        any other PEFT adapter (a plain LoRA, say) is loaded by ``PeftModel.from_pretrained``.
        """
        from peft import PeftConfig, PeftModel

        from cuma.adapter import load_cuma_model, read_config  # importing cuma.adapter registers CuMA
        from cuma.encoder import DemographicEncoder
        from cuma.models import load_base_model

        folder = Path(adapter_dir)
        config_path = folder / "adapter_config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"no adapter_config.json in {folder}; expected a saved adapter folder")
        peft_config = PeftConfig.from_pretrained(str(folder))
        base_name = base or peft_config.base_model_name_or_path
        if not base_name:
            raise ValueError(f"{config_path} names no base model; give it with --base")
        base_model, tokenizer = load_base_model(base_name, dtype=dtype)
        encoder = None
        if peft_config.peft_type == "CUMA":
            model = load_cuma_model(base_model, folder)
            if read_config(folder).uses_demographics:
                encoder = DemographicEncoder.from_adapter(folder, device=device)
        else:
            model = PeftModel.from_pretrained(base_model, str(folder))
        model.to(device or "cpu").eval()
        return cls(
            model,
            tokenizer,
            encoder,
            encoder.template if encoder is not None else None,
            name=name or folder.resolve().name,
        )

    @classmethod
    def from_base(
        cls, base: str, *, name: str | None = None, dtype: str | None = None, device: str | None = None
    ) -> Engine:
        """The engine for a bare base model (`cuma.models.load_base_model` names), without profiles."""
        from cuma.models import load_base_model

        model, tokenizer = load_base_model(base, dtype=dtype)
        return cls(model.to(device or "cpu").eval(), tokenizer, name=name or base)

    @property
    def profile_fields(self) -> tuple[str, ...]:
        return self.profiles.fields if self.profiles is not None else ()

    # ------------------------------------------------------------------ request -> job pieces
    def profile_text(self, profile: Mapping[str, object] | str | None) -> str | None:
        """The rendered profile for a request; 400 when it is missing, not wanted, or invalid."""
        if self.profiles is None:
            if profile is not None:
                raise invalid(
                    f"model {self.name!r} has no demographic router and reads no profile; drop 'profile'",
                    param="profile",
                )
            return None
        if profile is None:
            raise invalid(
                f"model {self.name!r} routes on the speaker's demographic profile: give 'profile' in the "
                'request body, e.g. extra_body={"profile": {...}} with fields '
                f"{list(self.profile_fields) or 'of the adapter template'}, or a profile sentence",
                param="profile",
                code="missing_profile",
            )
        return self.profiles.render(profile)

    def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise invalid(
                f"model {self.name!r} has no chat template; use /v1/completions with a text prompt",
                param="messages",
            )
        return render_prompt(self.tokenizer, messages)

    def text_prompt(self, prompt: str) -> list[int]:
        ids = self.tokenizer(prompt)["input_ids"]
        if not ids:
            raise invalid("the prompt is empty", param="prompt")
        return ids

    def option_token_ids(self, letters: Sequence[str]) -> list[int]:
        try:
            return letter_token_ids(self.tokenizer, letters)
        except DataError as err:
            raise invalid(str(err), param="options") from err

    # ------------------------------------------------------------------ batches
    def run(self, jobs: Sequence[Job]) -> list[Any]:
        """Run one batch (jobs of one ``batch_key``): a list of ``ChoiceResult`` per generation job, or
        the option probabilities per score job."""
        if all(isinstance(job, ScoreJob) for job in jobs):
            return self.score(jobs)
        if all(isinstance(job, GenerationJob) for job in jobs):
            return self.generate(jobs)
        raise TypeError("a batch mixes generation and scoring jobs")

    @torch.inference_mode()
    def generate(self, jobs: Sequence[GenerationJob]) -> list[list[ChoiceResult]]:
        sampling = jobs[0].sampling
        rows = [(job, choice) for job in jobs for choice in range(job.n)]
        decoders = [
            RowDecoder(
                self.tokenizer,
                self.eos_token_ids,
                job.max_tokens,
                job.stop,
                None if job.on_text is None else partial(job.on_text, choice),
            )
            for job, choice in rows
        ]
        input_ids, attention_mask = self._left_pad([job.prompt_ids for job, _ in rows])
        config = GenerationConfig(
            max_new_tokens=max(job.max_tokens for job in jobs),
            do_sample=not sampling.greedy,
            temperature=sampling.temperature if not sampling.greedy else None,
            top_p=sampling.top_p if not sampling.greedy else None,
            top_k=0 if not sampling.greedy else None,
            eos_token_id=sorted(self.eos_token_ids),
            pad_token_id=self.pad_token_id,
        )
        if sampling.seed is not None and not sampling.greedy:
            torch.manual_seed(sampling.seed)
        tracker = RowTracker(decoders, [job.cancelled.is_set for job, _ in rows])
        self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=config,
            stopping_criteria=StoppingCriteriaList([tracker]),
            **self._embeds([job.profile_text for job, _ in rows]),
        )
        for decoder in decoders:
            decoder.close()
        results: list[list[ChoiceResult]] = [[] for _ in jobs]
        index = {id(job): i for i, job in enumerate(jobs)}
        for (job, _), decoder in zip(rows, decoders, strict=True):
            results[index[id(job)]].append(
                ChoiceResult(decoder.text, decoder.finish_reason or "length", decoder.completion_tokens)
            )
        return results

    @torch.inference_mode()
    def score(self, jobs: Sequence[ScoreJob]) -> list[list[float]]:
        input_ids, attention_mask = self._left_pad([job.prompt_ids for job in jobs])
        embeds = self._embeds([job.profile_text for job in jobs]).get("demographic_embeds")
        logits, _ = answer_logits(self.model, input_ids, attention_mask, "left", embeds)
        return [
            torch.softmax(logits[i, job.option_token_ids].float(), dim=-1).tolist()
            for i, job in enumerate(jobs)
        ]

    def _embeds(self, texts: Sequence[str | None]) -> dict[str, torch.Tensor]:
        if self.profiles is None:
            return {}
        return {"demographic_embeds": self.profiles.encode(list(texts)).to(self.device)}

    def _left_pad(self, prompts: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids, attention_mask = pad_token_rows(prompts, self.pad_token_id, "left")
        return input_ids.to(self.device), attention_mask.to(self.device)
