"""Specification of `circuits.viz_mechanisms`: each figure shows the numbers of its result."""

from __future__ import annotations


from circuits.align import rotation_alignment
from circuits.phases import training_phases
from circuits.rope import rope_analysis
from circuits.stats import head_bias
from circuits.text_bias import caption_pair, text_attention_bias
from circuits.viz_mechanisms import (alignment_heatmaps, caption_pair_figure, consistency_bars, phases_figure,
                                     rope_accuracy_figure, rope_mechanisms_figure)
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


def test_caption_pair_figure_has_one_bar_per_caption_and_head(make_tiny_cfg):
    model, world = clip_for(make_tiny_cfg())
    tokens = caption_pair(world.probe("unseen_pair", "text").tokens)
    result = text_attention_bias(model, tokens)
    fig = caption_pair_figure(result, [world.position_labels(t, "text") for t in tokens])
    n_heads = len(result.bias)
    assert [list(t.y) for t in fig.data] == [result.per_caption[c][h] for c in range(2) for h in range(n_heads)]


def test_rope_accuracy_figure_shows_the_accuracies_and_where_the_maximum_falls(make_tiny_cfg):
    model, world = clip_for(make_tiny_cfg().with_overrides({"model.vision.positional": "rotary"}))
    bias = head_bias(model, world.probe("unseen_pair"))
    accuracies = {"single_object": 0.9, "seen_pair": 0.8, "unseen_pair": 0.7, "label_set": 0.6}
    fig = rope_accuracy_figure(accuracies, bias)
    assert [list(t.y) for t in fig.data] == [[0.9, 0.8, 0.7], bias.argmax_first, bias.argmax_second]


def test_rope_mechanisms_figure_plots_g_pca_rank_alignment_and_a_profiles(make_tiny_cfg):
    model, world = clip_for(make_tiny_cfg().with_overrides({"model.vision.positional": "rotary"}))
    r = rope_analysis(model, world.probe("unseen_pair"))
    fig = rope_mechanisms_figure(r)
    by_panel = {}
    for t in fig.data:
        by_panel.setdefault((t.xaxis, t.type), []).append(list(t.y))
    distances = sorted(r.bias_gradient)
    n = len(r.consistency)
    assert by_panel[("x", "scatter")] == [[r.bias_gradient[d][0][h] for d in distances] for h in range(n)]
    assert by_panel[("x2", "scatter")] == r.explained_variance
    assert by_panel[("x3", "bar")] == [r.effective_rank[tau] for tau in r.effective_rank]
    assert by_panel[("x4", "bar")] == [r.pc1_alignment]
    assert by_panel[("x5", "scatter")] == r.a_profile
