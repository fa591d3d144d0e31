"""Specification of `circuits.pair_bias` (App. G) on hand-set models: one whose heads prefer the
larger label wherever it is (no left/right bias, proportions that vary across pairs), and one
whose heads prefer the right object through an EP gradient."""

from __future__ import annotations

import pytest
import torch

from circuits.pair_bias import app_g_summary, argmax_by_pair
from conftest import ee_ep_model


def hand_set(make_tiny_cfg, label_weight, position_slope: float):
    return ee_ep_model(make_tiny_cfg(), label_weight, position_slope)


def test_a_head_preferring_the_larger_label_has_no_side_bias_but_varies_across_pairs(make_tiny_cfg):
    model, probe = hand_set(make_tiny_cfg, lambda label: 50.0 * label, 0.0)  # unseen labels 7, 8
    pairs, per_pair = argmax_by_pair(model, probe)
    assert pairs == [(7, 8), (8, 7)]
    assert per_pair[:, 0].tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]  # head 0: always on label 8
    g = app_g_summary(model, probe)
    assert g.left == pytest.approx([0.5, 0.5]) and g.right == pytest.approx([0.5, 0.5])
    assert g.pair_std_left == pytest.approx([0.5, 0.5])
    assert g.ep_monotonicity == pytest.approx([0.0, 0.0])
    assert g.no_consistent_bias


def test_a_head_with_a_rightward_ep_gradient_is_consistently_biased(make_tiny_cfg):
    model, probe = hand_set(make_tiny_cfg, lambda label: torch.full_like(label, 50.0), 1.0)
    _, per_pair = argmax_by_pair(model, probe)
    assert (per_pair[..., 1] == 1.0).all()
    g = app_g_summary(model, probe)
    assert g.right == pytest.approx([1.0, 1.0])
    assert not g.no_consistent_bias
