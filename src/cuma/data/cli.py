"""``cuma data``: list the datasets, show one (counts, questions, a prompt, answer shares), export it."""

from __future__ import annotations

import argparse
from dataclasses import replace

import pandas as pd

from cuma.data.chat import ChatData
from cuma.data.distribution import human_distribution
from cuma.data.examples import SurveyExample, build_examples
from cuma.data.registry import datasets, load
from cuma.data.survey import Survey
from cuma.errors import CumaError


def configure(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="data_command", required=True)
    commands.add_parser("list", help="list the datasets known by name").set_defaults(func=run_list)

    show = commands.add_parser(
        "show", help="counts, questions, scales, profile fields, a prompt, answer shares"
    )
    _common(show)
    show.add_argument("--by", help="profile field to break answer shares down by")
    show.add_argument("--questions", type=int, default=5, help="show answer shares for this many questions")
    show.set_defaults(func=run_show)

    export = commands.add_parser("export", help="write the examples as JSON Lines or a Hugging Face dataset")
    _common(export)
    export.add_argument("--format", choices=["jsonl", "hf"], default="jsonl")
    export.add_argument("--out", required=True, help="output directory")
    export.add_argument(
        "--split",
        choices=["respondent", "conversation", "annotator"],
        help="write train/valid/test (80/10/10) split by this group instead of everything at once",
    )
    export.add_argument("--seed", type=int, default=0)
    export.set_defaults(func=run_export)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="dataset name (see `cuma data list`) or a survey spec .yaml")
    parser.add_argument(
        "--path", help="local data (required for worldvaluesbench; optional for prism and CA)"
    )
    parser.add_argument(
        "--persona",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="profile in the system prompt (default: off for surveys, on for chat data, as in the paper)",
    )


def run_list(args: argparse.Namespace) -> None:
    rows = [(i.name, i.kind, i.description, i.path) for i in datasets().values()]
    print(pd.DataFrame(rows, columns=["name", "kind", "description", "data"]).to_string(index=False))


def _print_prompt(messages: list[dict[str, str]]) -> None:
    print("\nexample prompt:")
    for m in messages:
        print(f"  [{m['role']}] {m['content']}".replace("\n", "\n    "))


def _print_shares(examples: list[SurveyExample], by: str | None, n_questions: int) -> None:
    fields = [by] if by else []
    if by and not any(by in ex.profile for ex in examples):
        known = sorted({f for ex in examples for f in ex.profile})
        raise CumaError(f"--by {by!r}: no such profile field; fields: {known}")
    dist = human_distribution(examples, by=fields)
    for qid in list(dict.fromkeys(ex.question_id for ex in examples))[:n_questions]:
        table = dist[dist.question_id == qid].pivot_table(
            index=fields or "question_id", columns="code", values="share", sort=False, dropna=False
        )
        ex = next(e for e in examples if e.question_id == qid)
        names = {
            c: f"{x}. {label}" if len(label) <= 24 else x
            for c, x, label in zip(ex.option_codes, ex.option_letters, ex.option_labels, strict=True)
        }
        table = table.rename(columns=names)
        print(f"\nanswer shares, {qid}" + (f" by {by}" if by else "") + ":")
        print(table.round(3).to_string())


def _show_survey(survey: Survey, args: argparse.Namespace) -> None:
    print(survey.summary or f"source: {survey.source}")
    counts = (len(survey.respondents), len(survey.questions), len(survey.answers))
    print("\n{} respondents, {} questions, {} answers".format(*counts))
    print("\nprofile fields:")
    for name in survey.profile_fields:
        values = pd.Series([p.get(name) for p in survey.respondents.values()])
        example = values.dropna().iloc[0] if values.notna().any() else None
        print(f"  {name}: {values.nunique()} values, {int(values.isna().sum())} missing; e.g. {example!r}")
    print("\nquestions:")
    for q in survey.questions.values():
        kind = "ordinal" if q.ordinal else "nominal"
        print(f"  {q.id}: {len(q.codes)} options, codes {q.scale_min}..{q.scale_max} ({kind}): {q.text[:90]}")
    examples = build_examples(survey, persona=bool(args.persona))
    _print_prompt(examples[0].messages)
    _print_shares(examples, args.by, args.questions)


def _show_chat(data: ChatData, args: argparse.Namespace) -> None:
    print(data.summary)
    people = {ex.annotator_id for ex in data.sft}
    print(
        f"\n{len(people)} annotators, {len({ex.conversation_id for ex in data.sft})} conversations, "
        f"{len(data.sft)} SFT rows, {len(data.dpo)} DPO pairs, {len(data.choice)} choice sets"
    )
    print("\nprofile fields:", ", ".join(dict.fromkeys(f for ex in data.sft for f in ex.profile)))
    if data.sft:
        _print_prompt(data.sft[0].messages)
    if data.choice:
        # one annotator per conversation: pool the choice sets to show which letters get preferred
        pooled = [replace(ex, question_id="choice sets") for ex in data.choice]
        _print_shares(pooled, args.by, 1)


def run_show(args: argparse.Namespace) -> None:
    data = load(args.name, args.path, persona=args.persona)
    (_show_survey if isinstance(data, Survey) else _show_chat)(data, args)


def run_export(args: argparse.Namespace) -> None:
    from cuma.data.export import export_examples
    from cuma.data.splits import random_split

    data = load(args.name, args.path, persona=args.persona)
    if isinstance(data, Survey):
        if args.split not in (None, "respondent"):
            raise CumaError(f"--split {args.split}: surveys split by respondent")
        examples = build_examples(data, persona=bool(args.persona))
        if args.split:
            split = random_split(examples, seed=args.seed)
            parts = {name: split[name] for name in ("train", "valid", "test")}
        else:
            parts = {"examples": examples}
    else:
        if args.split == "respondent":
            raise CumaError("--split respondent: chat data splits by conversation or annotator")
        if args.split:
            splits = data.split(args.split, seed=args.seed)
            parts = {
                f"{what}_{name}": s[name] for what, s in splits.items() for name in ("train", "valid", "test")
            }
        else:
            parts = {"sft": data.sft, "dpo": data.dpo, "choice": data.choice}
        parts = {name: rows for name, rows in parts.items() if rows}
    for path in export_examples(parts, args.out, args.format):
        print(f"wrote {path}")
