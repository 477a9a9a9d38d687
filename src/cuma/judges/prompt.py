"""The demographic-aware judge prompt: the person's profile, the prompt and two responses, and the
question which response THIS person would prefer, answered ``[[A]]``, ``[[B]]`` or ``[[C]]`` (a tie)."""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cuma.data.profiles import KEY_VALUE, ProfileTemplate
from cuma.judges.verdict import JudgeItem
from cuma.yamlio import read_yaml

FIELDS = ("profile", "prompt", "response_a", "response_b")

SYSTEM = (
    "You are an impartial, culturally aware judge. You are given the profile of a specific person, a "
    "prompt, and two responses to it. Decide which response this person would prefer, judging from "
    "their background, values and circumstances as the profile describes them, not from your own taste "
    "or that of an average person. The order of the responses and their length must not influence you."
)
USER = (
    "Profile of the person: {profile}\n\n"
    "Prompt:\n{prompt}\n\n"
    "[Response A]\n{response_a}\n[End of Response A]\n\n"
    "[Response B]\n{response_b}\n[End of Response B]\n\n"
    "Which response would this person prefer? Answer with exactly one verdict: [[A]] if they would "
    "prefer Response A, [[B]] if they would prefer Response B, or [[C]] if they would like both equally."
)


@dataclass(frozen=True)
class JudgePrompt:
    """System and user messages; ``user`` is a ``str.format`` template with every field of ``FIELDS``.

    Attributes:
        system: the system message (empty: none is sent).
        user: the user message template.
        profile_template: renders a profile mapping; a profile given as a string is used as is.
    """

    system: str = SYSTEM
    user: str = USER
    profile_template: ProfileTemplate = field(default=KEY_VALUE)

    def __post_init__(self) -> None:
        if not isinstance(self.system, str) or not isinstance(self.user, str):
            got = f"{self.system!r}, {self.user!r}"
            raise TypeError(f"judge prompt: system and user must be strings; got {got}")
        names = {name for _, name, _, _ in string.Formatter().parse(self.user) if name is not None}
        missing, unknown = set(FIELDS) - names, names - set(FIELDS)
        if missing or unknown:
            raise ValueError(
                f"judge prompt template: the user message must use exactly the fields {', '.join(FIELDS)}; "
                f"missing {sorted(missing)}, unknown {sorted(unknown)}"
            )

    @property
    def fingerprint(self) -> str:
        """Identifies the template in cache keys: a changed prompt never reuses old verdicts."""
        text = json.dumps([self.system, self.user, repr(self.profile_template)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def render_profile(self, profile: Mapping[str, object] | str) -> str:
        text = profile if isinstance(profile, str) else self.profile_template.render(profile)
        if not text.strip():
            raise ValueError(f"judge prompt: the profile {profile!r} renders to empty text")
        return text

    def messages(self, item: JudgeItem) -> list[dict[str, str]]:
        """The chat messages asking about ``item``."""
        user = self.user.format(
            profile=self.render_profile(item.profile),
            prompt=item.prompt,
            response_a=item.response_a,
            response_b=item.response_b,
        )
        system = [{"role": "system", "content": self.system}] if self.system else []
        return [*system, {"role": "user", "content": user}]


PROMPTS = {"default": JudgePrompt()}
"""Built-in judge prompts by name."""


def load_prompt(template: str, profile_template: ProfileTemplate | None = None) -> JudgePrompt:
    """A built-in prompt by name, or a YAML file with ``system`` and ``user`` keys."""
    if template in PROMPTS:
        prompt = PROMPTS[template]
    else:
        raw = read_yaml(Path(template), "judge prompt template")
        if not isinstance(raw, dict) or "user" not in raw or set(raw) - {"system", "user"}:
            raise ValueError(
                f"{template}: a judge prompt template is a mapping with the keys 'user' and optionally "
                f"'system'; got {raw!r}"
            )
        try:
            prompt = JudgePrompt(system=raw.get("system") or "", user=raw["user"])
        except ValueError as err:
            raise ValueError(f"{template}: {err}") from None
    if profile_template is not None:
        prompt = JudgePrompt(prompt.system, prompt.user, profile_template)
    return prompt


def judge_prompt(messages: Sequence[Mapping[str, str]]) -> str:
    """The prompt as the judge sees it: the user's message, or for a conversation with history every
    non-system turn as ``Role: text``, ending with the user's message being answered."""
    turns = [m for m in messages if m["role"] != "system"]
    if len(turns) == 1:
        return turns[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in turns)
