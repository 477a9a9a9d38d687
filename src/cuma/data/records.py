"""Rows of a hub dataset or of local JSON Lines / Parquet files, numbered for error messages."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cuma.data.errors import DataError


@dataclass(frozen=True)
class Record:
    """One source row with where it came from."""

    data: Mapping[str, Any]
    source: str
    row: int

    def get(self, path: str, required: bool = True) -> Any:
        """The value at a dotted path (``location.reside_country``); missing -> error or None."""
        value: Any = self.data
        for part in path.split("."):
            if not isinstance(value, Mapping) or part not in value:
                if required:
                    raise DataError("row lacks a field", source=self.source, row=self.row, column=path)
                return None
            value = value[part]
        return value


def read_jsonl(path: Path) -> Iterator[Record]:
    with path.open() as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"not valid JSON: {err.msg}", source=path, row=line_no) from None
            if not isinstance(data, Mapping):
                raise DataError("a JSON Lines row must be an object", source=path, row=line_no)
            yield Record(data, str(path), line_no)


def read_local(path: Path) -> list[Record]:
    """Rows of one ``.jsonl`` or ``.parquet`` file, or of every such file in a folder (sorted)."""
    files = (
        sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".parquet")) if path.is_dir() else [path]
    )
    if not files or not all(p.is_file() for p in files):
        raise DataError("no .jsonl or .parquet file found", source=path)
    records: list[Record] = []
    for file in files:
        if file.suffix == ".parquet":
            import pandas as pd

            rows = pd.read_parquet(file).to_dict("records")
            records += [Record(row, str(file), i + 1) for i, row in enumerate(rows)]
        elif file.suffix == ".jsonl":
            records += list(read_jsonl(file))
        else:
            raise DataError("unsupported file type; use .jsonl or .parquet", source=file)
    return records


def read_hub(repo: str, config: str, split: str) -> list[Record]:
    """Rows of a Hugging Face hub dataset (needs network access and the ``datasets`` cache)."""
    from datasets import load_dataset

    source = f"hf:{repo}/{config}/{split}"
    return [Record(row, source, i + 1) for i, row in enumerate(load_dataset(repo, config, split=split))]
