"""Render the figures of committed sweep results as SVG for the docs (docs/figures/NAME.svg).

Each figure is the one ``lenscli reproduce NAME`` writes to ``figure.html`` (its spec's
``[experiment.figure]``, `circuits.sweep.catalogue.entry_figure`), drawn from
``experiments/results/NAME/results.csv``. Static export needs kaleido >= 1 and a Chromium, which
are not dependencies of the toolkit: ``pip install "kaleido>=1"`` first.

    python experiments/render_figures.py fig4a app-c
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from circuits.sweep.catalogue import entry_figure, get

ROOT = Path(__file__).resolve().parent.parent


def render(name: str, out_dir: Path = ROOT / "docs" / "figures") -> Path:
    """docs/figures/NAME.svg from the committed results of catalogue entry NAME."""
    entry = get(name)
    frame = pd.read_csv(ROOT / "experiments" / "results" / entry.name / "results.csv")
    fig = entry_figure(entry, frame)
    if fig is None:
        raise SystemExit(f"{name}: no figure (no [experiment.figure] or no finished run)")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{entry.name}.svg"
    fig.write_image(path, width=1100, height=500)
    return path


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(render(arg))
