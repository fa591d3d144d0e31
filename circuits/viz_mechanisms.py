"""Figures of the mechanism analyses (Fig. 7, Fig. 11, Fig. 19a), from their results.

=========================  ===================================================
`alignment_heatmaps`       held-out cosine matrices, raw and rotated (Fig. 7a, b)
`phases_figure`            accuracies and per-step loss, phases shaded (Fig. 11)
`consistency_bars`         Eq. 23 satisfaction per head, full / b_K = 0 / PC1 (Fig. 19a)
=========================  ===================================================

Same conventions as `circuits.viz`: heads ``H0..``, diverging colour scale centred at 0 for
signed quantities.
"""

from __future__ import annotations

import os

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from circuits.align import Alignment
from circuits.phases import Phases, loss_curve
from circuits.rope import RopeAnalysis
from circuits.viz import DIVERGING, _color, _finish, head_names, read_history


def alignment_heatmaps(alignment: Alignment) -> go.Figure:
    """``cos(A_a, B_b)`` and ``cos(A_a R, B_b)`` on the held-out labels (rows vision, columns text)."""
    labels = [str(k) for k in alignment.eval_labels]
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        f"raw (diagonal {alignment.raw.get('diagonal', float('nan')):.2f})",
        f"rotated (diagonal {alignment.rotated['diagonal']:.2f}, p = {alignment.permutation.get('p', float('nan')):.3f})"))
    for col, matrix in ((1, alignment.raw_matrix), (2, alignment.rotated_matrix)):
        fig.add_trace(go.Heatmap(z=matrix, x=labels, y=labels, colorscale=DIVERGING, zmid=0, zmin=-1, zmax=1,
                                 showscale=col == 2, hovertemplate="vision %{y}<br>text %{x}<br>cosine %{z:.3f}<extra></extra>"),
                      row=1, col=col)
        fig.update_xaxes(title_text="text label", row=1, col=col)
        fig.update_yaxes(title_text="vision label", autorange="reversed", row=1, col=col)
    fit = f"{alignment.fit_labels[0]}..{alignment.fit_labels[-1]}"
    return _finish(fig, f"Token embeddings of held-out labels, R fitted on labels {fit} (Fig. 7)", 420)


def phases_figure(history: list[dict] | str | os.PathLike, phases: Phases) -> go.Figure:
    """Single-object / seen-pair / unseen-pair accuracy and the training loss, the three phases shaded."""
    rows = read_history(history)
    steps = [r["step"] for r in rows]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for i, key in enumerate(("single_object", "seen_pair", "unseen_pair")):
        fig.add_trace(go.Scatter(x=steps, y=[r.get(key) for r in rows], name=key, mode="lines", line=dict(color=_color(i))),
                      secondary_y=False)
    loss_steps, losses, source = loss_curve(rows)
    fig.add_trace(go.Scatter(x=loss_steps.tolist(), y=losses.tolist(), name=f"loss ({source})", mode="lines",
                             line=dict(color="black", width=1)), secondary_y=True)
    for i, (start, end) in enumerate(phases.phases):
        if start is not None and end is not None and end > start:
            fig.add_vrect(x0=start, x1=end, fillcolor=_color(i), opacity=0.08, line_width=0,
                          annotation_text=f"phase {i + 1}", annotation_position="top left")
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], secondary_y=False)
    fig.update_yaxes(title_text="training loss", type="log", secondary_y=True, showgrid=False)
    return _finish(fig, f"Training phases: t1 = {phases.t1}, t2 = {phases.t2}, t3 = {phases.t3} (App. D, Fig. 11)", 450)


def consistency_bars(rope: RopeAnalysis) -> go.Figure:
    """Fraction of (pair, positions) with Δ·Δ' > 0 per head: full logits, b_K = 0, b_K = 0 with
    keys on PC1, beside the argmax |P_left − P_right| (Fig. 19a, Fig. 18c)."""
    heads = head_names(len(rope.consistency))
    series = (("|P_left − P_right| (argmax)", rope.argmax_left_minus_right), ("full", rope.consistency),
              ("b_K = 0", rope.consistency_no_bias), ("b_K = 0, keys on PC1", rope.consistency_pc1))
    fig = go.Figure([go.Bar(x=heads, y=v, name=name, marker_color=_color(i)) for i, (name, v) in enumerate(series)])
    fig.update_layout(barmode="group", xaxis_title="head", yaxis=dict(title="fraction", range=[0, 1]))
    return _finish(fig, "Consistency condition Δ·Δ' > 0 per head (App. J, Fig. 19a)", 420)
