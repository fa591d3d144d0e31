"""Rich tables for the analysis commands (decompose, ablate, bias): plain rendering, no analysis."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from lenscli.common import ACCURACY_LABELS


def _console() -> Console:
    return Console()


def _pct(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.1%}"


def _num(value: float) -> str:
    return "-inf" if value == float("-inf") else f"{value:+.2f}"


def print_ablation(result: Mapping[str, Any], *, title: str) -> None:
    """Baseline, ablated and change for every accuracy of `evaluate_ablation`'s result."""
    table = Table()
    for name, justify in (("metric", "left"), ("baseline", "right"), ("ablated", "right"), ("change", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    base, after = result["baseline"], result["ablated"]
    for key, label in ACCURACY_LABELS.items():
        if key in base:
            change = after[key] - base[key]
            table.add_row(label, _pct(base[key]), _pct(after[key]), "n/a" if math.isnan(change) else f"{change:+.1%}")
    console = _console()
    console.print(Text(title, style="bold"))
    console.print(table)


def print_bias(bias: Any) -> None:
    """A `circuits.stats.HeadBias` (fractions of the inputs): a row per quantity, in the probe's
    words for the two objects (`HeadBias.labels`: left / right for images, subject / object for
    captions, as in the report), a column per head (split over several tables when the heads
    do not fit the terminal)."""
    labels = bias.labels()
    first, second = bias.names
    console = _console()
    console.print(Text(
        f"Head bias of the {bias.encoder} encoder, layer {bias.layer}, on {bias.n_inputs} {bias.split} inputs",
        style="bold",
    ))
    rows = bias.rows()
    _print_columns(console, "", list(labels.values()),
                   {f"H{row['head']}": [_pct(row[key]) for key in labels] for row in rows})
    console.print(
        f"{first}/{second}: attention on that object is larger; max: the row's maximum falls on it; "
        f"rel→: relational toward it (the position terms decide), label: label-specific; relational means |Δ({bias.position_terms})| > |Δ({bias.token_terms})| between the two objects on the pooled row",
        style="dim",
    )


def _print_columns(console: Console, key_header: str, keys: Sequence[str], columns: Mapping[str, Sequence[str]],
                   title: str = "") -> None:
    """A table with a key column and the given value columns (right-aligned, never wrapped or
    cut), split into several tables with the key column repeated when they do not fit."""
    names = list(columns)
    widths = [max(len(n), *(len(v) for v in columns[n]), 6) for n in names]
    key_width = min(max([len(key_header), *(len(k) for k in keys)]), 20)
    runs = _chunks(widths, max(console.width - key_width - 4, 12))
    for part, run in enumerate(runs):
        suffix = f" ({part + 1}/{len(runs)})" if len(runs) > 1 else ""
        table = Table(title=f"{title}{suffix}" if title or suffix else None, title_justify="left")
        table.add_column(key_header, overflow="fold", max_width=20)
        for i in run:
            table.add_column(names[i], justify="right", no_wrap=True, min_width=widths[i])
        for k, key in enumerate(keys):
            table.add_row(key, *(columns[names[i]][k] for i in run))
        console.print(table)


def print_term_summary(rows: Sequence[Mapping[str, Any]], *, title: str) -> None:
    """Share of the pooled row's spread, monotonicity and slope per (head, term)."""
    table = Table()
    for name in ("head", "term", "share", "monotonicity", "slope"):
        table.add_column(name, justify="left" if name in ("head", "term") else "right")
    head = None
    for row in rows:
        if head is not None and row["head"] != head:
            table.add_section()
        head = row["head"]
        table.add_row(f"H{head}", row["term"], f"{row['share']:.2f}", f"{row['monotonicity']:+.2f}", f"{row['slope']:+.3f}")
    console = _console()
    console.print(Text(title, style="bold"))
    console.print(table)
    console.print(
        "share: std of the term along the pooled row / std of the scores (App. E); monotonicity: Spearman "
        "correlation with the key column; slope: least-squares change per column (App. F)",
        style="dim",
    )


def _chunks(widths: Sequence[int], room: int) -> list[list[int]]:
    """Indices of columns of the given widths, split into runs that fit ``room`` characters
    (each column costs its width plus 3: padding and a border); at least one per run."""
    runs: list[list[int]] = [[]]
    used = 0
    for i, width in enumerate(widths):
        if runs[-1] and used + width + 3 > room:
            runs.append([])
            used = 0
        runs[-1].append(i)
        used += width + 3
    return runs


def print_profile(profile: Any, *, title: str) -> None:
    """Each term's value at every key of the pooled row (Fig. 5b), one table per head: a row
    per key position, a column per term, then the full scores and the attention pattern. When
    the columns do not fit the terminal, the terms are split over several tables (the key
    column repeated), so no number is ever cut."""
    console = _console()
    console.print(Text(title, style="bold"))
    for h in range(len(profile.pattern)):
        columns = {name: [_num(v) for v in profile.terms[name][h]] for name in profile.terms}
        columns["scores"] = [_num(v) for v in profile.scores[h]]
        columns["pattern"] = [f"{v:.2f}" for v in profile.pattern[h]]
        _print_columns(console, "key", profile.keys, columns, title=f"H{h}")


def print_headline(numbers: Mapping[str, Any]) -> None:
    """The main job's summary: accuracies, per-head bias and the ablation table of a
    `circuits.report.headline`."""
    from circuits.stats import HeadBias
    from lenscli.common import print_metrics

    print_metrics(numbers["accuracies"], title="Retrieval accuracy (Sec. 2.3; label-set: App. H)")
    print_bias(HeadBias(**numbers["head_bias"]))
    table = Table()
    table.add_column("zeroed (vision, all heads)")
    metrics = [key for key in ACCURACY_LABELS if key in numbers["ablation"]["baseline"]]
    for key in metrics:
        table.add_column(ACCURACY_LABELS[key], justify="right")
    for name, row in numbers["ablation"].items():
        table.add_row("nothing" if name == "baseline" else name, *(_pct(row.get(key)) for key in metrics))
    console = _console()
    console.print(Text("Zero-ablation of score terms (Fig. 5e, Table 2)", style="bold"))
    console.print(table)
