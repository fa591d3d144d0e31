"""Specification of `circuits.phases` (App. D, Fig. 11) on synthetic metrics with known answers."""

from __future__ import annotations

import json

import pytest
import torch

from circuits.errors import CheckpointError, CircuitsError
from conftest import synthetic_history

from circuits.phases import loss_bumps, relative_crossing, stable_crossing, training_phases


def test_boundaries_of_a_synthetic_run():
    p = training_phases(synthetic_history())
    assert (p.t1, p.t2, p.t3) == (50, 100, 150)
    assert p.consecutive
    assert p.phases == [(0, 50), (50, 100), (100, 200)]


def test_the_loss_jump_near_t1_is_found_at_its_step_and_size():
    p = training_phases(synthetic_history())
    assert p.loss_source == "step_losses"
    assert p.window == 10
    assert (p.bump_t1_step, p.bump_t1) == (55, pytest.approx(2.0))
    assert p.bump_t2 == pytest.approx(0.0)


def test_without_step_losses_the_eval_loss_is_used():
    p = training_phases(synthetic_history(step_losses=False))
    assert p.loss_source == "eval loss"
    assert p.bump_t1 == pytest.approx(0.0)  # the jump at step 55 falls between evaluations


def test_stable_crossing_skips_a_level_that_is_lost_again():
    steps = torch.tensor([1, 2, 3, 4])
    assert stable_crossing(steps, torch.tensor([0.995, 0.9, 0.99, 0.975])) == 3
    assert stable_crossing(steps, torch.tensor([0.5, 0.6, 0.7, 0.8])) is None


def test_relative_crossing_is_relative_to_the_final_value():
    assert relative_crossing(torch.tensor([1, 2, 3]), torch.tensor([0.2, 0.46, 0.5])) == 2


def test_loss_bumps_relative_to_the_running_minimum():
    assert loss_bumps(torch.tensor([4.0, 2.0, 3.0, 1.0])).tolist() == [0.0, 0.0, 0.5, 0.0]


def test_boundaries_that_are_never_reached_are_none_and_not_consecutive():
    rows = [{**r, "seen_pair": 0.5} for r in synthetic_history()]
    p = training_phases(rows)
    assert p.t2 is None and p.bump_t2 is None and not p.consecutive


def test_reads_a_checkpoints_metrics_file(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in synthetic_history()))
    assert training_phases(tmp_path).t2 == 100


def test_a_checkpoint_without_metrics_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="metrics.jsonl is missing"):
        training_phases(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(CircuitsError, match="no metrics rows"):
        training_phases(tmp_path)
