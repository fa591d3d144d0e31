"""Evaluation runs the task's metrics the way analyses need: eval mode, and the hooked path when hooks are attached."""

from __future__ import annotations

import torch
from conftest import clip_for

from circuits.evaluation import evaluate, hooks_active


def test_evaluate_is_the_tasks_metrics_on_its_generalization_splits(tiny_cfg):
    model, world = clip_for(tiny_cfg)
    out = evaluate(model, world)
    assert set(world.eval_splits) <= out.keys() and "label_set" in out
    assert out == world.evaluate(model, world.eval_splits, pooled_only=True)


def test_with_hooks_attached_evaluate_runs_the_full_path_where_they_fire(tiny_cfg):
    model, world = clip_for(tiny_cfg)
    plain = evaluate(model, world, ("train_single",))
    calls = []
    with model.hooks(vision=[("blocks.0.attn.hook_pattern", lambda x, hook: calls.append(1))]):
        assert hooks_active(model)
        assert evaluate(model, world, ("train_single",)) == plain
    assert calls and not hooks_active(model)


def test_evaluate_restores_the_training_mode(tiny_cfg):
    model, world = clip_for(tiny_cfg)
    model.train()
    evaluate(model, world, ("train_single",))
    assert model.training
    assert not torch.is_grad_enabled() or all(p.grad is None for p in model.parameters())


def test_circuits_evaluate_is_the_function_whatever_was_imported_before(tiny_cfg):
    """The module is `circuits.evaluation`, so importing it never rebinds ``circuits.evaluate``."""
    import circuits
    import circuits.evaluation  # noqa: F401  (as circuits.ablate and others do)

    model, world = clip_for(tiny_cfg)
    assert circuits.evaluate is evaluate
    assert circuits.evaluate(model, world, ("train_single",)) == world.evaluate(model, ("train_single",))
