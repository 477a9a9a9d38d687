"""Write examples as JSON Lines or a Hugging Face dataset, for inspection or other tools."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cuma.atomic import atomic_directory, atomic_path


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

    Each file (or the dataset folder, which must be new, empty or an earlier export) replaces the previous
    one only once complete (`cuma.atomic`).
    Returns the paths written.
    """
    out = Path(out)
    if fmt == "jsonl":
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, examples in parts.items():
            path = out / f"{name}.jsonl"
            with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
                for ex in examples:
                    f.write(json.dumps(example_record(ex), ensure_ascii=False) + "\n")
            written.append(path)
        return written
    if fmt == "hf":
        from datasets import Dataset, DatasetDict

        if out.is_dir() and any(out.iterdir()) and not (out / "dataset_dict.json").is_file():
            raise FileExistsError(f"{out} holds other files; the hf format replaces the whole folder")
        dataset = DatasetDict(
            {
                name: Dataset.from_list([example_record(ex) for ex in examples])
                for name, examples in parts.items()
            }
        )
        with atomic_directory(out) as tmp:
            dataset.save_to_disk(str(tmp))
        return [out]
    raise ValueError(f"format must be 'jsonl' or 'hf', got {fmt!r}")
