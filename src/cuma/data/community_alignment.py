"""Community Alignment (``facebook/community-alignment-dataset``, config ``benchmark``).

Each row is one annotator's conversation: for each turn (first..fourth) a prompt, four candidate
responses ``a``-``d`` and the preferred one (``response_b``...). A conversation ends at the first
turn without a prompt (later turns that have one are dropped and counted); a turn with a prompt
but no usable preference is dropped with the rest of its conversation and counted. The usable
turns before either cut are kept and the conversation is counted as truncated.

Besides SFT rows and DPO pairs (preferred vs each other response), the first turn gives the
4-way choice set the paper evaluates ("which of A-D did this annotator prefer"), as
`SurveyExample`s so that multiple-choice scoring applies unchanged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from cuma.data.chat import ChatData, Conversation, ConversationCounts, Turn, build_chat_data
from cuma.data.errors import DataError
from cuma.data.examples import SurveyExample
from cuma.data.profiles import KEY_VALUE, Profile, ProfileTemplate, is_missing
from cuma.data.prompt import ChatFormat, PromptFormat, option_letters
from cuma.data.records import Record, read_hub, read_local
from cuma.data.summary import LoadSummary

HUB_ID = "facebook/community-alignment-dataset"
TURNS = ("first", "second", "third", "fourth")
RESPONSES = ("a", "b", "c", "d")
FIELDS = {
    "age": "annotator_age",
    "gender": "annotator_gender",
    "country": "annotator_country",
    "political": "annotator_political",
    "ethnicity": "annotator_ethnicity",
    "education": "annotator_education_level",
}
"""Profile field -> annotator column, as in the paper (add ``assigned_lang`` for the language)."""

CHOICE_FORMAT = PromptFormat(
    system="You are a helpful assistant. Choose the most appropriate response to the user's prompt.",
    persona_system="User Profile: {profile}\nChoose the response this user would prefer.",
    instruction="Answer with the letter of one response.",
)
"""The 4-way choice prompt: vanilla asks for the most appropriate response, persona for this user's."""


def _text(value: object) -> str:
    return "" if is_missing(value) else str(value)


def load_community_alignment(
    path: str | Path | None = None,
    *,
    split: str = "filtered",
    fields: Mapping[str, str] = FIELDS,
    template: ProfileTemplate = KEY_VALUE,
    fmt: ChatFormat | None = None,
    choice_format: PromptFormat = CHOICE_FORMAT,
    persona: bool = True,
) -> ChatData:
    """Load Community Alignment as SFT rows, DPO pairs and the first-turn 4-way choice set.

    Args:
        path: a ``.jsonl`` / ``.parquet`` file or a folder of them; None reads the hub
            (config ``benchmark``, split ``split``).
        fields: profile field -> annotator column.
        template, fmt, persona: profile rendering and chat system prompt (profile in it by default).
        choice_format: wording of the choice-set prompts (they use the same ``persona`` flag).
    """
    rows = read_hub(HUB_ID, "benchmark", split) if path is None else read_local(Path(path))
    source = f"hf:{HUB_ID}/benchmark/{split}" if path is None else str(path)
    summary = LoadSummary(source)
    conversations, choice_sets = _read(rows, fields, summary)
    data = build_chat_data(
        "community-alignment", conversations, template, fmt or ChatFormat(), persona, summary
    )
    data.choice = _choice_examples(choice_sets, template, choice_format, persona)
    return data


def _read(
    rows: Sequence[Record], fields: Mapping[str, str], summary: LoadSummary
) -> tuple[list[Conversation], list[tuple[Conversation, str, tuple[str, ...], int]]]:
    conversations, choices = [], []
    counts, choice_drops = ConversationCounts(), Counter()
    seen: dict[tuple[str, str], int] = {}
    for rec in rows:
        aid, cid = str(rec.get("annotator_id")), str(rec.get("conversation_id"))
        if (aid, cid) in seen:
            raise DataError(
                f"duplicate (annotator_id, conversation_id), first at row {seen[aid, cid]}",
                source=rec.source,
                row=rec.row,
                column="conversation_id",
                value=cid,
            )
        seen[aid, cid] = rec.row
        profile = Profile({name: rec.get(col) for name, col in fields.items()})
        asked = [bool(_text(rec.get(f"{t}_turn_prompt", required=t == "first")).strip()) for t in TURNS]
        prompts = TURNS[: asked.index(False)] if False in asked else TURNS
        after_gap = sum(asked[len(prompts) :])
        turns = counts.usable_turns((_turn(rec, t) for t in prompts), len(prompts) + after_gap)
        if len(turns) == len(prompts):
            counts.turns["after a turn without a prompt"] += after_gap
            if turns and after_gap:
                counts.truncated["truncated at a turn without a prompt"] += 1
        conv = Conversation(cid, aid, profile, tuple(turns))
        if turns:
            conversations.append(conv)
        elif not prompts:
            counts.conversations["no prompt in the first turn"] += 1
        responses = tuple(_text(rec.get(f"first_turn_response_{r}", required=False)) for r in RESPONSES)
        preferred = _preferred(rec, "first") if prompts else "no prompt in the first turn"
        if isinstance(preferred, str):
            choice_drops[preferred] += 1
        elif not all(x.strip() for x in responses):
            choice_drops["first turn lacks one of the four responses"] += 1
        else:
            choices.append((conv, _text(rec.get("first_turn_prompt")), responses, preferred))
    counts.add_to(summary, len(rows), len(conversations))
    summary.add("choice sets", len(rows), len(choices), choice_drops)
    return conversations, choices


def _preferred(rec: Record, t: str) -> int | str:
    """Index (0-3) of the preferred response, or the reason there is none."""
    value = _text(rec.get(f"{t}_turn_preferred_response", required=False)).strip()
    if not value:
        return "turn without a preferred response"
    names = [f"response_{r}" for r in RESPONSES]
    if value not in names:
        raise DataError(
            f"preferred response must be one of {names}",
            source=rec.source,
            row=rec.row,
            column=f"{t}_turn_preferred_response",
            value=value,
        )
    return names.index(value)


def _turn(rec: Record, t: str) -> Turn | str:
    preferred = _preferred(rec, t)
    if isinstance(preferred, str):
        return preferred
    responses = [_text(rec.get(f"{t}_turn_response_{r}", required=False)) for r in RESPONSES]
    chosen = responses[preferred]
    if not chosen.strip():
        return "preferred response is empty"
    rejected = tuple(r for i, r in enumerate(responses) if i != preferred)
    return Turn(prompt=_text(rec.get(f"{t}_turn_prompt")), chosen=chosen, rejected=rejected)


def _choice_examples(
    choices: Sequence[tuple[Conversation, str, tuple[str, ...], int]],
    template: ProfileTemplate,
    fmt: PromptFormat,
    persona: bool,
) -> list[SurveyExample]:
    letters = option_letters(len(RESPONSES))
    codes = tuple(range(len(RESPONSES)))
    examples = []
    for conv, prompt, responses, preferred in choices:
        text = template.render(conv.profile)
        question = f"A user wrote:\n{prompt}\n\nWhich response is best?"
        examples.append(
            SurveyExample(
                respondent_id=conv.annotator_id,
                question_id=conv.conversation_id,
                profile=conv.profile,
                profile_text=text,
                prompt_messages=fmt.messages(question, responses, text, persona),
                option_letters=letters,
                option_codes=codes,
                option_labels=responses,
                target_letter=letters[preferred],
                target_code=preferred,
                scale_min=0,
                scale_max=len(RESPONSES) - 1,
                ordinal=False,
            )
        )
    return examples
