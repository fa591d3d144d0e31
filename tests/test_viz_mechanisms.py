"""Specification of `circuits.viz_mechanisms`: each figure shows the numbers of its result."""

from __future__ import annotations


from circuits.align import rotation_alignment
from circuits.phases import training_phases
from circuits.rope import rope_analysis
from circuits.viz_mechanisms import alignment_heatmaps, consistency_bars, phases_figure
from conftest import clip_for
from conftest import synthetic_history


def test_alignment_heatmaps_show_the_raw_and_rotated_matrices(make_tiny_cfg):
    model, world = clip_for(make_tiny_cfg())
    a = rotation_alignment(model, world.train_labels, world.heldout_labels, n_permutations=10)
    fig = alignment_heatmaps(a)
    assert [list(map(list, t.z)) for t in fig.data] == [a.raw_matrix, a.rotated_matrix]
    assert list(fig.data[0].x) == [str(k) for k in world.heldout_labels]


def test_phases_figure_shades_the_three_phases_and_plots_every_step_loss():
    history = synthetic_history()
    fig = phases_figure(history, training_phases(history))
    assert [(s.x0, s.x1) for s in fig.layout.shapes] == [(0, 50), (50, 100), (100, 200)]
    assert len(fig.data[-1].x) == 200


def test_consistency_bars_are_the_rope_fractions(make_tiny_cfg):
    model, world = clip_for(make_tiny_cfg().with_overrides({"model.vision.positional": "rotary"}))
    r = rope_analysis(model, world.probe("unseen_pair"))
    fig = consistency_bars(r)
    assert [list(t.y) for t in fig.data] == [r.argmax_left_minus_right, r.consistency, r.consistency_no_bias, r.consistency_pc1]
