"""Specification of `circuits.stat_checks` (Fig. 4c vs 5d, App. F, App. R) on a hand-set model
whose only position-dependent score is an EP gradient toward the right."""

from __future__ import annotations

import pytest
import torch

from circuits.stat_checks import bias_checks, gradient_terms
from conftest import ee_ep_model


@pytest.fixture(params=[1.0, -1.0], ids=["rightward", "leftward"])
def ep_gradient_model(request, make_tiny_cfg):
    """Score of key m = 50 [object] + slope * m through EP and EE only (every other term zero)."""
    slope = request.param
    model, probe = ee_ep_model(make_tiny_cfg(), lambda labels: torch.full_like(labels, 50.0), slope)
    return model, probe, slope


def test_the_ep_slope_has_the_sign_of_the_argmax_bias(ep_gradient_model):
    model, probe, slope = ep_gradient_model
    rows = bias_checks(model, probe)
    assert all(r["ep_slope"] == pytest.approx(slope) for r in rows)
    assert all(r["ep_sign_matches_bias"] for r in rows)
    assert all(r["argmax_difference"] == pytest.approx(1.0) for r in rows)  # always the same side


def test_every_input_is_relational_when_labels_score_alike(ep_gradient_model):
    model, probe, _ = ep_gradient_model
    assert all(r["relational"] == pytest.approx(1.0) and r["gap"] == pytest.approx(0.0) for r in bias_checks(model, probe))


def test_the_terms_with_a_gradient_are_found(ep_gradient_model):
    model, probe, _ = ep_gradient_model
    out = gradient_terms(model, probe)
    assert out["with_gradient"] == ["EP"]
    assert out["key_position_terms"] == ["EP", "PP", "BP"]
    assert not out["exactly_key_position"]
