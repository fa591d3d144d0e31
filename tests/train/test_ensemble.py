"""Specification of vectorised ensembles: each member of `train_ensemble` is the run that
`train_model` gives for its config alone (metrics within 1e-4, weights within 1e-5 after 50
steps), and `ensemble_key` stacks exactly the configs that can share a stack."""

from __future__ import annotations

import pytest
import torch

import circuits
from circuits.train.ensemble import ensemble_key, train_ensemble


@pytest.fixture(scope="module")
def members_and_twins(make_tiny_cfg):
    base = make_tiny_cfg().with_overrides({"train.steps": 50})
    cfgs = [base.with_overrides({"train.seed": s, "model.vision.init_pos_std": 0.05 * (s + 1)}) for s in range(3)]
    return train_ensemble(cfgs), [circuits.train_model(c, progress=False) for c in cfgs]


def test_members_have_the_weights_of_their_single_run_twins(members_and_twins):
    members, twins = members_and_twins
    for member, twin in zip(members, twins):
        for (name, want), got in zip(twin.model.state_dict().items(), member.model.state_dict().values()):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-5, msg=name)


def test_members_have_the_metrics_history_of_their_single_run_twins(members_and_twins):
    members, twins = members_and_twins
    for member, twin in zip(members, twins):
        assert [h["step"] for h in member.history] == [h["step"] for h in twin.history]
        for got, want in zip(member.history, twin.history):
            assert got.keys() == want.keys()
            for key in want.keys() - {"seconds"}:
                assert got[key] == pytest.approx(want[key], abs=1e-4), key


def test_members_differ_from_each_other(members_and_twins):
    members, _ = members_and_twins
    assert len({m.history[-1]["loss"] for m in members}) == len(members)


def test_seeds_and_init_scales_share_a_stack_but_shapes_worlds_and_optimiser_settings_do_not(make_tiny_cfg):
    cfg = make_tiny_cfg()
    same = [cfg.with_overrides({"train.seed": 3}), cfg.with_overrides({"model.text.init_embed_std": 0.5})]
    assert {ensemble_key(c) for c in same} == {ensemble_key(cfg)}
    for change in ({"train.lr": 0.01}, {"world.seed": 1}, {"model.vision.d_model": 24}, {"train.steps": 31}):
        assert ensemble_key(cfg.with_overrides(change)) != ensemble_key(cfg), change


def test_minibatches_and_dropout_are_never_stacked(make_tiny_cfg):
    cfg = make_tiny_cfg()
    assert ensemble_key(cfg.with_overrides({"train.batch_size": 8})) is None
    assert ensemble_key(cfg.with_overrides({"model.vision.dropout": 0.1})) is None


def test_losses_the_stack_does_not_compute_are_never_stacked(make_tiny_cfg):
    cfg = make_tiny_cfg()
    for change in ({"train.loss": "mask_false_negatives"}, {"train.positives": "one_drawn"}, {"model.kind": "prefix_lm"}):
        assert ensemble_key(cfg.with_overrides(change)) is None, change
