"""PRISM (``HannahRoseKirk/prism-alignment``): survey profiles and rated multi-turn conversations.

From the hub (configs ``survey`` and ``conversations``) or from a local folder holding
``survey.jsonl`` and ``conversations.jsonl``. Each turn of ``conversation_history`` has one user
message and the rated model responses, one of them ``if_chosen``. A turn without a user message
or without exactly one chosen response, or a conversation that ends on a user turn, cannot be
used; that turn and the rest of its conversation are dropped and counted in the summary. The
usable turns before it are kept, since each is a complete exchange, and the conversation is
counted as truncated (``conversations`` notes in the summary).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from cuma.data.chat import ChatData, Conversation, ConversationCounts, Turn, build_chat_data
from cuma.data.errors import DataError
from cuma.data.profiles import KEY_VALUE, Profile, ProfileTemplate
from cuma.data.prompt import ChatFormat
from cuma.data.records import Record, read_hub, read_local
from cuma.data.summary import LoadSummary

HUB_ID = "HannahRoseKirk/prism-alignment"
FIELDS = {
    "country": "location.reside_country",
    "age": "age",
    "gender": "gender",
    "education": "education",
    "religion": "religion.simplified",
    "ethnicity": "ethnicity.simplified",
    "employment": "employment_status",
}
"""Profile field -> survey field (dotted for nested ones), as in the paper."""


def load_prism(
    path: str | Path | None = None,
    *,
    fields: Mapping[str, str] = FIELDS,
    missing_values: Sequence[str] = ("Prefer not to say",),
    template: ProfileTemplate = KEY_VALUE,
    fmt: ChatFormat | None = None,
    persona: bool = True,
) -> ChatData:
    """Load PRISM as SFT rows and DPO pairs.

    Args:
        path: folder with ``survey.jsonl`` and ``conversations.jsonl``; None reads the hub.
        fields: profile field -> survey field; add more (e.g. ``"marital_status"``) as needed.
        missing_values: answers that mean the value is missing.
        template, fmt, persona: profile rendering and system prompt (profile in it by default, for
            every method, as the authors did; see docs/design.md).
    """
    if path is None:
        survey, conversations = (
            read_hub(HUB_ID, "survey", "train"),
            read_hub(HUB_ID, "conversations", "train"),
        )
    else:
        survey, conversations = (
            read_local(Path(path) / "survey.jsonl"),
            read_local(Path(path) / "conversations.jsonl"),
        )
    source = f"hf:{HUB_ID}" if path is None else str(path)
    profiles = _profiles(survey, fields, {v.lower() for v in missing_values})
    summary = LoadSummary(source)
    convs = _conversations(conversations, profiles, summary)
    return build_chat_data("prism", convs, template, fmt or ChatFormat(), persona, summary)


def _profiles(rows: Sequence[Record], fields: Mapping[str, str], missing: set[str]) -> dict[str, Profile]:
    profiles: dict[str, Profile] = {}
    for rec in rows:
        uid = str(rec.get("user_id"))
        if uid in profiles:
            raise DataError(
                "duplicate user_id in the survey", source=rec.source, row=rec.row, column="user_id", value=uid
            )
        values = {name: rec.get(col) for name, col in fields.items()}
        profiles[uid] = Profile(
            {k: None if str(v).strip().lower() in missing else v for k, v in values.items()}
        )
    return profiles


def _turn(items: Sequence[Mapping], last: bool) -> Turn | str:
    """A usable turn, or the reason it is not."""
    users = [m for m in items if m.get("role") == "user"]
    models = [m for m in items if m.get("role") == "model"]
    if len(users) != 1 or not str(users[0].get("content") or "").strip():
        return "turn without exactly one user message"
    if not models:
        return "conversation ends on a user turn" if last else "turn without model responses"
    chosen = [m for m in models if m.get("if_chosen") is True]
    if len(chosen) != 1:
        return "turn without a chosen response" if not chosen else "turn with several chosen responses"
    answer = str(chosen[0].get("content") or "")
    if not answer.strip():
        return "chosen response is empty"
    others = tuple(str(m.get("content") or "") for m in models if m is not chosen[0])
    return Turn(prompt=str(users[0]["content"]), chosen=answer, rejected=others)


def _conversations(
    rows: Sequence[Record], profiles: Mapping[str, Profile], summary: LoadSummary
) -> list[Conversation]:
    out: list[Conversation] = []
    counts = ConversationCounts()
    seen: set[str] = set()
    for rec in rows:
        cid, uid, history = (
            str(rec.get("conversation_id")),
            str(rec.get("user_id")),
            rec.get("conversation_history"),
        )
        if cid in seen:
            raise DataError(
                "duplicate conversation_id",
                source=rec.source,
                row=rec.row,
                column="conversation_id",
                value=cid,
            )
        seen.add(cid)
        by_turn = _by_turn(rec, history)
        if uid not in profiles:
            counts.conversations["no survey row for the user"] += 1
            counts.turns["no survey row for the user"] += len(by_turn)
            counts.turns_read += len(by_turn)
            continue
        turns = (_turn(items, last=k == len(by_turn) - 1) for k, items in enumerate(by_turn))
        usable = counts.usable_turns(turns, len(by_turn))
        if usable:
            out.append(Conversation(cid, uid, profiles[uid], tuple(usable)))
        elif not by_turn:
            counts.conversations["empty conversation_history"] += 1
    counts.add_to(summary, len(rows), len(out))
    return out


def _by_turn(rec: Record, history: object) -> list[list[Mapping]]:
    """History items grouped by their ``turn`` number, in turn order."""
    if not isinstance(history, list):
        raise DataError(
            "conversation_history must be a list",
            source=rec.source,
            row=rec.row,
            column="conversation_history",
            value=type(history).__name__,
        )
    groups: dict[int, list[Mapping]] = {}
    for item in history:
        if not isinstance(item, Mapping) or "turn" not in item or "role" not in item:
            raise DataError(
                "history item lacks turn or role",
                source=rec.source,
                row=rec.row,
                column="conversation_history",
                value=item,
            )
        groups.setdefault(int(item["turn"]), []).append(item)
    return [groups[t] for t in sorted(groups)]
