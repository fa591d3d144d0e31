"""Figures of a sweep's results table (`load_results`): plotly, like `circuits.viz`.

* `metric_lines` - metrics against one swept key, one line per value of another, a band of
  ± std over seeds, one panel per metric (Fig. 3 / Fig. 4(a): x = N_pair, one line per n_2);
* `metric_heatmap` - the mean of one metric over two swept keys;
* `metric_bars` - mean ± std of several columns, one group of bars per value of a key
  (e.g. accuracies after each ablation per variant, Table 2).
"""

from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go
from plotly.colors import DEFAULT_PLOTLY_COLORS
from plotly.subplots import make_subplots

from circuits.sweep.spec import SweepError

LABELS = {"single_object": "single-object", "seen_pair": "seen-pair", "unseen_pair": "unseen-pair",
          "world.n_pair_labels": "N_pair (training labels)", "world.n_pair_positions": "n_2 (position pairs per label pair)",
          "train.weight_decay": "weight decay"}


def _label(key: str) -> str:
    return LABELS.get(key, key)


def _done(frame, columns: Sequence[str]):
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SweepError(f"the results table has no column {missing[0]!r}; columns: {', '.join(map(str, frame.columns))}")
    return frame[frame["status"] == "done"]


def _rgba(color: str, alpha: float) -> str:
    return color.replace("rgb(", "rgba(").replace(")", f", {alpha})")


def metric_lines(frame, x: str, metrics: Sequence[str], line: str | None = None, title: str = "", x_category: bool = False) -> go.Figure:
    """Mean ± std over seeds of each metric against ``x``; one line per value of ``line``."""
    done = _done(frame, [x, *metrics, *([line] if line else [])])
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[_label(m) for m in metrics], shared_yaxes=False)
    groups = sorted(done[line].unique()) if line else [None]
    for col, metric in enumerate(metrics, start=1):
        for i, value in enumerate(groups):
            part = done if value is None else done[done[line] == value]
            stats = part.groupby(x)[metric].agg(["mean", "std", "count"]).reset_index().sort_values(x)
            stats["std"] = stats["std"].fillna(0.0)
            color = DEFAULT_PLOTLY_COLORS[i % len(DEFAULT_PLOTLY_COLORS)]
            name = f"{_label(line)} = {value}" if line else metric
            xs = list(stats[x])
            fig.add_trace(go.Scatter(x=xs + xs[::-1], y=list(stats["mean"] + stats["std"]) + list(stats["mean"] - stats["std"])[::-1],
                                     fill="toself", fillcolor=_rgba(color, 0.15), line=dict(width=0), mode="lines", hoverinfo="skip",
                                     showlegend=False, legendgroup=name), row=1, col=col)
            fig.add_trace(go.Scatter(x=xs, y=stats["mean"], mode="lines+markers", line=dict(color=color), name=name,
                                     legendgroup=name, showlegend=col == 1,
                                     customdata=stats[["std", "count"]], hovertemplate="%{y:.3f} ± %{customdata[0]:.3f} (n=%{customdata[1]})"),
                          row=1, col=col)
        fig.update_xaxes(title_text=_label(x), type="category" if x_category else None, row=1, col=col)
    fig.update_yaxes(title_text="accuracy (mean ± std over seeds)", row=1, col=1)
    fig.update_layout(title=title or f"{', '.join(map(_label, metrics))} against {_label(x)}", height=420, width=380 * len(metrics) + 200)
    return fig


def metric_heatmap(frame, x: str, y: str, metric: str, title: str = "") -> go.Figure:
    """The mean over seeds of ``metric`` on the (``x``, ``y``) grid."""
    done = _done(frame, [x, y, metric])
    table = done.pivot_table(index=y, columns=x, values=metric, aggfunc="mean").sort_index()
    fig = go.Figure(go.Heatmap(z=table.values, x=[str(c) for c in table.columns], y=[str(i) for i in table.index],
                               colorscale="Viridis", colorbar=dict(title=_label(metric)),
                               text=[[f"{v:.2f}" for v in row] for row in table.values], texttemplate="%{text}"))
    fig.update_layout(title=title or f"{_label(metric)} (mean over seeds)", xaxis_title=_label(x), yaxis_title=_label(y), height=450)
    return fig


def metric_bars(frame, by: str, columns: Sequence[str], title: str = "", names: Sequence[str] | None = None) -> go.Figure:
    """Mean ± std over seeds of ``columns`` (one bar each), one group per value of ``by``."""
    done = _done(frame, [by, *columns])
    fig = go.Figure()
    for value in sorted(done[by].unique()):
        part = done[done[by] == value]
        fig.add_trace(go.Bar(x=list(names or columns), y=[part[c].mean() for c in columns], name=f"{_label(by)} = {value}",
                             error_y=dict(type="data", array=[part[c].std() if len(part) > 1 else 0.0 for c in columns])))
    fig.update_layout(barmode="group", title=title, yaxis_title="mean ± std over seeds", height=450)
    return fig
