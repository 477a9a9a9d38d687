"""Preference data (PRISM, Community Alignment) as SFT rows, DPO pairs and choice sets.

Loaders reduce each source to `Conversation`s of `Turn`s (a user prompt, the response the
annotator chose and the ones they did not); `build_chat_data` turns those into examples that the
collators and splits of `cuma.data` accept, all carrying the annotator's profile.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cuma.data.errors import DataError
from cuma.data.examples import SurveyExample
from cuma.data.profiles import Profile, ProfileTemplate
from cuma.data.prompt import ChatFormat
from cuma.data.splits import SPLIT_PARTS, Split, assign_groups
from cuma.data.summary import LoadSummary


@dataclass(frozen=True)
class Turn:
    """One exchange: the user's prompt, the chosen response and the other responses as given.

    Empty other responses and copies of the chosen one make no DPO pair; `build_chat_data`
    skips and counts them.
    """

    prompt: str
    chosen: str
    rejected: tuple[str, ...] = ()


@dataclass(frozen=True)
class Conversation:
    """The usable turns of one conversation, in order, with its annotator."""

    conversation_id: str
    annotator_id: str
    profile: Profile
    turns: tuple[Turn, ...]


@dataclass
class ConversationCounts:
    """What a loader reads and drops on the way to its `Conversation`s, for the `LoadSummary`.

    One rule for every source: a conversation keeps its turns up to the first unusable one; that turn
    and every later one are dropped, and the conversation counts as truncated when it kept a turn, as
    dropped (for that turn's reason) when it kept none.

    Attributes:
        conversations: reason -> conversations dropped for it.
        turns: reason -> turns dropped for it.
        truncated: reason -> conversations kept but cut short.
        turns_read, turns_kept: turn totals.
    """

    conversations: Counter[str] = field(default_factory=Counter)
    turns: Counter[str] = field(default_factory=Counter)
    truncated: Counter[str] = field(default_factory=Counter)
    turns_read: int = 0
    turns_kept: int = 0

    def usable_turns(self, turns: Iterable[Turn | str], total: int) -> list[Turn]:
        """The turns before the first unusable one (given as the reason, a str), of a conversation of
        ``total`` turns read. ``turns`` is consumed lazily: nothing after the first unusable turn is read."""
        usable: list[Turn] = []
        for k, turn in enumerate(turns):
            if isinstance(turn, str):
                self.turns[turn] += 1
                self.turns["after an unusable turn"] += total - k - 1
                if usable:
                    self.truncated["truncated at an unusable turn"] += 1
                else:
                    self.conversations[turn] += 1
                break
            usable.append(turn)
        self.turns_read += total
        self.turns_kept += len(usable)
        return usable

    def add_to(self, summary: LoadSummary, read: int, kept: int) -> None:
        """Record the ``conversations`` (``read`` rows, ``kept`` conversations) and ``turns`` units."""
        summary.add("conversations", read, kept, self.conversations, notes=self.truncated)
        summary.add("turns", self.turns_read, self.turns_kept, self.turns)


class _ChatRow:
    """Names a chat row's annotator and turn as survey rows name who answered what (run fingerprints,
    batch logs)."""

    annotator_id: str
    conversation_id: str
    turn: int

    @property
    def respondent_id(self) -> str:
        return self.annotator_id

    @property
    def question_id(self) -> str:
        return f"{self.conversation_id}#{self.turn}"


@dataclass(frozen=True)
class ChatExample(_ChatRow):
    """An SFT row: history (chosen responses only) + the user's prompt -> the chosen response."""

    conversation_id: str
    annotator_id: str
    turn: int
    profile: Profile
    profile_text: str
    prompt_messages: tuple[dict[str, str], ...]
    answer: str
    embedding: Any = None

    @property
    def messages(self) -> list[dict[str, str]]:
        return [*self.prompt_messages, {"role": "assistant", "content": self.answer}]


@dataclass(frozen=True)
class PreferencePair(_ChatRow):
    """A DPO pair: same prompt (with the history so far), the chosen and one rejected response."""

    conversation_id: str
    annotator_id: str
    turn: int
    profile: Profile
    profile_text: str
    prompt_messages: tuple[dict[str, str], ...]
    chosen: str
    rejected: str
    embedding: Any = None

    @property
    def answer(self) -> str:
        """The chosen response, so SFT collators can train on it."""
        return self.chosen


@dataclass
class ChatData:
    """Everything one preference dataset yields.

    Attributes:
        name: dataset name.
        sft: one `ChatExample` per usable turn.
        dpo: one `PreferencePair` per (usable turn, rejected response).
        choice: multiple-choice sets as `SurveyExample` (respondent = annotator, question =
            conversation); Community Alignment's 4-way first-turn choice, empty for PRISM.
        summary: what was read, kept and dropped, and why.
    """

    name: str
    sft: list[ChatExample]
    dpo: list[PreferencePair]
    choice: list[SurveyExample] = field(default_factory=list)
    summary: LoadSummary | None = None

    def split(
        self, by: str = "conversation", *, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
    ) -> dict[str, Split[Any]]:
        """Train/valid/test of ``sft``, ``dpo`` and ``choice``, split by conversation or annotator.

        One assignment of groups serves all three, so a conversation (or annotator) is on the same
        side everywhere and nothing leaks from SFT or DPO training into the choice evaluation.
        """
        keys = {
            "conversation": ("conversation_id", "question_id"),
            "annotator": ("annotator_id", "respondent_id"),
        }
        if by not in keys:
            raise ValueError(f"by must be 'conversation' or 'annotator', got {by!r}")
        key, choice_key = keys[by]
        ids = [getattr(x, key) for x in [*self.sft, *self.dpo]] + [
            getattr(x, choice_key) for x in self.choice
        ]
        groups = assign_groups(ids, fractions, seed)
        parts = {
            "sft": Split([], [], [], key=key, groups=groups).apply(self.sft),
            "dpo": Split([], [], [], key=key, groups=groups).apply(self.dpo),
            "choice": Split([], [], [], key=choice_key, groups=groups).apply(self.choice),
        }
        source = self.summary.source if self.summary else None
        for name, fraction in zip(SPLIT_PARTS, fractions, strict=True):
            if fraction > 0 and not parts["sft"][name]:
                raise DataError(
                    f"the {name} split of {self.name} is empty after splitting its {len(self.sft)} SFT "
                    f"rows by {by}",
                    source=source,
                    column=key,
                )
        return parts


def build_chat_data(
    name: str,
    conversations: Sequence[Conversation],
    template: ProfileTemplate,
    fmt: ChatFormat,
    persona: bool,
    summary: LoadSummary,
) -> ChatData:
    """SFT rows (one per turn, history of chosen responses) and DPO pairs (one per rejected response).

    A rejected response that is empty or the same as the chosen one gives no pair; ``summary``
    counts them under ``DPO pairs``.
    """
    sft, dpo = [], []
    skipped: Counter[str] = Counter()
    for conv in conversations:
        text = template.render(conv.profile)
        history: list[dict[str, str]] = [{"role": "system", "content": fmt.system_prompt(text, persona)}]
        for i, turn in enumerate(conv.turns):
            history.append({"role": "user", "content": turn.prompt})
            prompt = tuple(dict(m) for m in history)
            common = dict(
                conversation_id=conv.conversation_id,
                annotator_id=conv.annotator_id,
                turn=i,
                profile=conv.profile,
                profile_text=text,
                prompt_messages=prompt,
            )
            sft.append(ChatExample(**common, answer=turn.chosen))
            for rejected in turn.rejected:
                if not rejected.strip():
                    skipped["rejected response is empty"] += 1
                elif rejected.strip() == turn.chosen.strip():
                    skipped["rejected response is the chosen one"] += 1
                else:
                    dpo.append(PreferencePair(**common, chosen=turn.chosen, rejected=rejected))
            history.append({"role": "assistant", "content": turn.chosen})
    summary.add("DPO pairs", len(dpo) + sum(skipped.values()), len(dpo), skipped)
    return ChatData(name=name, sft=sft, dpo=dpo, summary=summary)
