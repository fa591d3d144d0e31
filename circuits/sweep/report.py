"""The HTML page of a sweep: its figures and its table (``lenscli report --sweep OUT``)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

from circuits.report import check_free, write_html, figures_html, html_table
from circuits.sweep.layout import load_results, summarize

SPLITS = ("single_object", "seen_pair", "unseen_pair")


def sweep_figures(frame) -> list:
    """Default figures: metrics against the first swept key (one line per value of the second),
    and a heatmap of unseen-pair accuracy when two keys are swept."""
    from circuits.sweep.figures import metric_heatmap, metric_lines

    swept = list(frame.attrs.get("swept", []))
    metrics = [m for m in SPLITS if m in frame.columns]
    if not metrics or not (frame["status"] == "done").any():
        return []
    if not swept:
        return []
    figures = [metric_lines(frame, swept[0], metrics, line=swept[1] if len(swept) > 1 else None)]
    if len(swept) > 1 and "unseen_pair" in metrics:
        figures.append(metric_heatmap(frame, swept[0], swept[1], "unseen_pair"))
    return figures


def summary_rows(frame, metrics: Sequence[str] = SPLITS) -> list[dict[str, Any]]:
    """Rows "mean ± std (n)" per group of swept keys, for tables."""
    metrics = [m for m in metrics if m in frame.columns]
    table = summarize(frame, metrics=metrics)
    rows = []
    by = list(frame.attrs.get("swept", []))
    for index, record in table.iterrows():
        key = index if isinstance(index, tuple) else (index,)
        row: dict[str, Any] = dict(zip(by, key)) if by else {}
        for m in metrics:
            mean, std, n = record[(m, "mean")], record[(m, "std")], int(record[(m, "count")])
            row[m] = f"{mean:.3f} ± {0.0 if math.isnan(std) else std:.3f}" if n > 1 else f"{mean:.3f}"
        row["n"] = int(record[(metrics[0], "count")]) if metrics else 0
        rows.append(row)
    return rows


def write_sweep_report(out: str | os.PathLike[str], path: str | os.PathLike[str] | None = None, *, force: bool = False,
                       figures: list | None = None, title: str | None = None) -> Path:
    """Write the sweep's page (figures, the mean ± std table, one row per run) to ``path``
    (default OUT/report.html); an existing file is replaced only with ``force``."""
    path = Path(path) if path is not None else Path(out) / "report.html"
    check_free(path, force)
    frame = load_results(out)
    figs = sweep_figures(frame) if figures is None else figures
    swept = list(frame.attrs.get("swept", []))
    runs = frame[[c for c in ["run_id", "status", *swept, "seed", *SPLITS, "train_seconds", "error"] if c in frame.columns]]
    after = ("<h2>Mean ± std over seeds</h2>" + (html_table(summary_rows(frame)) if (frame["status"] == "done").any() else "<p>(no finished run)</p>")
             + "<h2>Runs</h2>" + html_table(runs.to_dict("records")))
    return write_html(figures_html(figs, title or f"Sweep {Path(out).name}", after=after), path, force)
