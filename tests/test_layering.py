"""The package imports only downward: config -> data/tasks -> models -> checkpoint/evaluate ->
training -> analyses -> figures/report -> CLI. Every module has a layer here; an import of a
module in a higher layer (anywhere in the file, lazy imports included) is a failure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# longest matching prefix wins; a new module must be placed here
LAYERS: dict[str, int] = {
    "circuits.errors": 0, "circuits.config": 0, "circuits.runtime": 0, "circuits.atomic": 0,
    "circuits.tasks": 1, "circuits.data": 1,
    "circuits.models": 2,
    "circuits.checkpoint": 3, "circuits.evaluation": 3,
    "circuits.train": 4,
    "circuits.decompose": 5, "circuits.ablate": 5, "circuits.stats": 5, "circuits.spatial": 5,
    "circuits.prune": 5, "circuits.failures": 5, "circuits.align": 5, "circuits.consistency": 5,
    "circuits.pair_bias": 5, "circuits.phases": 5, "circuits.rope": 5, "circuits.stat_checks": 5, "circuits.text_bias": 5,
    "circuits.viz": 6, "circuits.report": 6, "circuits.report_vlm": 6, "circuits.viz_mechanisms": 6,
    "circuits.sweep": 6,  # populations: trains, analyses and draws them (its figures and page reuse the report's)
    "lenscli": 7,
}
TOP = 8  # the package `circuits` itself: its __init__ re-exports from every layer


def layer_of(module: str) -> int | None:
    if module == "circuits":
        return TOP
    matches = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    return LAYERS[max(matches, key=len)] if matches else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from circuits import viz`
    return {n for n in names if n.split(".")[0] in ("circuits", "lenscli")}


SOURCES = sorted([*(ROOT / "circuits").rglob("*.py"), *(ROOT / "lenscli").rglob("*.py")])


@pytest.mark.parametrize("path", SOURCES, ids=[module_name(p) for p in SOURCES])
def test_every_module_imports_only_its_own_layer_or_below(path: Path) -> None:
    here = layer_of(module_name(path))
    assert here is not None, f"{module_name(path)} has no layer in tests/test_layering.py"
    upward = sorted(n for n in imported(path) if n != "circuits" and (layer_of(n) or 0) > here)
    assert not upward, f"{module_name(path)} (layer {here}) imports {upward}"
