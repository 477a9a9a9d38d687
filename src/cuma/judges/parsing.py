"""Reading a verdict from a judge's answer text."""

from __future__ import annotations

import re

from cuma.judges.verdict import Verdict

VERDICT_LETTERS = {"A": "a", "B": "b", "C": "tie"}
"""The letter inside ``[[...]]`` -> choice; C is a tie."""
_TOKEN = re.compile(r"\[\[([ABC])\]\]")


def parse_verdict(text: str | None) -> Verdict:
    """Exactly one distinct verdict token (``[[A]]``, ``[[B]]``, ``[[C]]``) in ``text`` is the choice.

    No token, or two different ones, is a failure with the reason, not a guess: the text may repeat its
    verdict, but an answer naming both responses has not chosen.
    """
    if text is None:
        return Verdict.failure("the judge's answer has no text")
    found = sorted(set(_TOKEN.findall(text)))
    if len(found) == 1:
        return Verdict(VERDICT_LETTERS[found[0]], raw=text)
    if not found:
        return Verdict.failure("no verdict token ([[A]], [[B]] or [[C]]) in the judge's answer", raw=text)
    tokens = ", ".join(f"[[{letter}]]" for letter in found)
    return Verdict.failure(f"conflicting verdict tokens {tokens} in the judge's answer", raw=text)
