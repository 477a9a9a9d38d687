"""Write examples as JSON Lines or a Hugging Face dataset, for inspection or other tools."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def example_record(example: Any) -> dict[str, Any]:
    """An example as a JSON-ready dict: its fields, ``messages``, the profile as a dict, vectors as lists."""
    record = {}
    for f in dataclasses.fields(example):
        value = getattr(example, f.name)
        if f.name == "embedding":
            value = None if value is None else [float(x) for x in value]
        elif f.name == "profile":
            value = dict(value)
        elif isinstance(value, tuple):
            value = [dict(v) if isinstance(v, Mapping) else v for v in value]
        record[f.name] = value
    if hasattr(example, "messages"):
        record["messages"] = example.messages
    return record


def export_examples(parts: Mapping[str, Sequence[Any]], out: str | Path, fmt: str) -> list[Path]:
    """Write each named list of examples: ``{name}.jsonl`` files, or one ``DatasetDict`` saved to ``out``.

    Returns the paths written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        written = []
        for name, examples in parts.items():
            path = out / f"{name}.jsonl"
            with path.open("w") as f:
                for ex in examples:
                    f.write(json.dumps(example_record(ex), ensure_ascii=False) + "\n")
            written.append(path)
        return written
    if fmt == "hf":
        from datasets import Dataset, DatasetDict

        DatasetDict(
            {
                name: Dataset.from_list([example_record(ex) for ex in examples])
                for name, examples in parts.items()
            }
        ).save_to_disk(str(out))
        return [out]
    raise ValueError(f"format must be 'jsonl' or 'hf', got {fmt!r}")
