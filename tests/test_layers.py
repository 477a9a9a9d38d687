"""The dependency direction of docs/architecture.md, checked on the source: no module imports upward."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "cuma"

LAYERS = {
    # foundation: settings, errors, files, processes
    **dict.fromkeys(
        [
            "__init__",
            "errors",
            "fieldcheck",
            "yamlio",
            "config",
            "atomic",
            "sidecar",
            "lock",
            "processes",
            "precision",
            "hub",
            "lazy",
        ],
        0,
    ),
    # data and the metrics over predictions
    **dict.fromkeys(["data", "metrics", "reference_baselines"], 1),
    # model pieces
    **dict.fromkeys(["tiny", "models", "adapter", "encoder", "quick"], 2),
    "methods": 3,
    **dict.fromkeys(["train", "evaluation", "judges"], 4),
    **dict.fromkeys(["preflight", "compare"], 5),
    # command lines and applications: may use everything
    **dict.fromkeys(["cli", "__main__", "export", "demo", "serve"], 6),
}


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cuma":
            found.add(package(node.module))
        elif isinstance(node, ast.Import):
            found |= {package(alias.name) for alias in node.names if alias.name.split(".")[0] == "cuma"}
    return found


def test_every_package_has_a_layer() -> None:
    packages = {p.stem if p.is_file() else p.name for p in SRC.iterdir() if p.suffix == ".py" or p.is_dir()}
    packages -= {"__pycache__", "configs"}
    assert packages <= set(LAYERS), f"add {sorted(packages - set(LAYERS))} to LAYERS and docs/architecture.md"


def test_no_module_imports_a_higher_layer() -> None:
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC)
        own = relative.parts[0].removesuffix(".py")
        if relative.name == "cli.py":  # a package's command line belongs to the top layer
            continue
        for target in imports(path) - {own}:
            if LAYERS[target] > LAYERS[own]:
                upward.append(f"{relative} imports cuma.{target} (layer {LAYERS[target]} > {LAYERS[own]})")
    assert not upward, "\n".join(upward)
