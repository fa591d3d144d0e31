"""Specification of the torch.func training step: K stacked copies under vmap give each copy
exactly what training it alone gives (gradients, and weights after several optimiser steps)."""

from __future__ import annotations

import pytest
import torch

from circuits.config import RunConfig, TrainConfig
from circuits.data import World
from circuits.models import HookedCLIP
from circuits.train import ClipObjective, clip_batch, fit, full_batch, make_optimizer
from circuits.train.functional import load_member, stack_models, vmapped_grad_step, vmapped_grads

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def default_members():
    """Four differently seeded copies of the DEFAULT model, with the default world's batch."""
    cfg = RunConfig().with_overrides({"train.device": "cpu"})
    world = World(cfg.world)
    models = [HookedCLIP.for_task(cfg.with_overrides({"train.seed": s}), world) for s in range(4)]
    return models, clip_batch(world, CPU)


def test_the_default_model_step_under_vmap_gives_each_copy_its_own_gradients(default_members):
    models, batch = default_members
    objective = ClipObjective()
    params, buffers = stack_models(models)
    grads, losses = vmapped_grads(models[0], objective, params, buffers, batch)
    assert len(set(losses.tolist())) == 4, "the copies should differ"
    for k, model in enumerate(models):
        model.zero_grad()
        loss = objective.loss(model, batch)
        loss.backward()
        torch.testing.assert_close(losses[k], loss.detach(), rtol=1e-5, atol=0)
        # relative to the member's largest gradient: some (b_K) are zero up to rounding noise
        scale = max(float(p.grad.abs().max()) for p in model.parameters())
        for name, p in model.named_parameters():
            torch.testing.assert_close(grads[name][k], p.grad, rtol=1e-5, atol=1e-5 * scale, msg=name)


def test_adamw_on_stacked_parameters_trains_each_member_as_if_alone(tiny_cfg):
    world = World(tiny_cfg.world)
    cfgs = [tiny_cfg.with_overrides({"train.seed": s}) for s in range(3)]
    batch, objective = clip_batch(world, CPU), ClipObjective()
    shape = HookedCLIP.for_task(cfgs[0], world)
    params, buffers = stack_models([HookedCLIP.for_task(c, world) for c in cfgs])
    optimizer = make_optimizer(params, tiny_cfg.train)
    for _ in range(4):
        vmapped_grad_step(shape, objective, params, buffers, batch, optimizer)
    for k, cfg in enumerate(cfgs):
        alone = HookedCLIP.for_task(cfg, world)
        fit(alone, objective, full_batch(batch), make_optimizer(alone, cfg.train), 4, progress=False)
        member = load_member(HookedCLIP.for_task(cfg, world), params, buffers, k)
        for (name, want), got in zip(alone.named_parameters(), member.parameters()):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)


def test_the_stacked_optimizer_spares_the_logit_scale_from_weight_decay(tiny_cfg):
    world = World(tiny_cfg.world)
    params, _ = stack_models([HookedCLIP.for_task(tiny_cfg, world), HookedCLIP.for_task(tiny_cfg.with_overrides({"train.seed": 1}), world)])
    optimizer = make_optimizer(params, TrainConfig(weight_decay=0.5))
    by_decay = {g["weight_decay"]: {id(p) for p in g["params"]} for g in optimizer.param_groups}
    assert by_decay[0.0] == {id(params["logit_scale"])}
    assert by_decay[0.5] == {id(p) for n, p in params.items() if n != "logit_scale" and p.requires_grad}


def test_load_member_copies_that_members_weights(tiny_cfg):
    world = World(tiny_cfg.world)
    models = [HookedCLIP.for_task(tiny_cfg.with_overrides({"train.seed": s}), world) for s in range(3)]
    params, buffers = stack_models(models)
    loaded = load_member(HookedCLIP.for_task(tiny_cfg, world), params, buffers, 2)
    for (name, want), got in zip(models[2].named_parameters(), loaded.parameters()):
        assert torch.equal(got, want), name
