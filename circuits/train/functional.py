"""The training step under `torch.func`: K stacked copies of one architecture trained at once.

Stack the members' parameters (leading member axis), compute every member's loss gradient in
one vectorised call (``vmap`` of ``grad_and_value``), and let any ``torch.optim`` optimiser
update the stacked tensors: AdamW & co. are elementwise, so each member is updated exactly as
if it were trained alone. The model and objective are arbitrary (any ``nn.Module``, any
``loss(model, batch)``); the members share the batch::

    from circuits.train import ClipObjective, clip_batch, make_optimizer
    from circuits.train.functional import load_member, stack_models, vmapped_grad_step

    models = [HookedCLIP.for_task(cfg.with_overrides({"train.seed": s}), world) for s in range(4)]
    params, buffers = stack_models(models)          # name -> [4, ...] leaf tensors
    optimizer = make_optimizer(params, cfg.train)   # a torch.optim optimiser over the stacked tensors
    batch = clip_batch(world, device)
    for _ in range(steps):
        losses = vmapped_grad_step(models[0], ClipObjective(), params, buffers, batch, optimizer)  # [4]
    load_member(models[2], params, buffers, 2)      # member 2's weights back into a module

The module passed to the step (``models[0]`` above) only supplies the architecture and code;
its own weights are not read. The pooled fast path of `HookedCLIP` is vmap-ready (see
`circuits.models.pooled_ops`); its token-dependent plans are cached on the module, nothing
derived from parameters is.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Sequence

import torch
from torch import Tensor, nn

from circuits.train.objective import LossFn, ObjectiveLike, loss_function

Params = dict[str, Tensor]


def stack_models(models: Sequence[nn.Module]) -> tuple[Params, Params]:
    """(parameters, buffers) of same-architecture ``models`` stacked along a new first axis.

    Parameters come back as fresh leaf tensors (trainable ones require grad); the models are
    not modified and no longer linked to them.
    """
    return torch.func.stack_module_state(list(models))


class _LossModule(nn.Module):
    def __init__(self, model: nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch: Any) -> Tensor:
        return self.loss_fn(self.model, batch)


def functional_loss(model: nn.Module, objective: ObjectiveLike) -> Callable[[Params, Params, Any], Tensor]:
    """``f(params, buffers, batch)``: the objective's loss of ``model`` with those weights (one member)."""
    wrapper = _LossModule(model, loss_function(objective))

    def f(params: Params, buffers: Params, batch: Any) -> Tensor:
        state = {f"model.{k}": v for d in (params, buffers) for k, v in d.items()}
        return torch.func.functional_call(wrapper, state, (batch,))

    return f


def vmapped_grads(
    model: nn.Module,
    objective: ObjectiveLike,
    params: Params,
    buffers: Params,
    batch: Any,
    randomness: Literal["error", "different", "same"] = "error",
) -> tuple[Params, Tensor]:
    """(gradients, losses) of every stacked member on ``batch``: name -> [K, ...] and [K].

    ``randomness`` is vmap's (dropout needs "different" or "same"; "error" refuses random ops).
    """
    f = torch.func.grad_and_value(functional_loss(model, objective))
    with torch.no_grad():  # no graph outside the transform: the gradients are plain tensors
        return torch.func.vmap(f, in_dims=(0, 0, None), randomness=randomness)(params, buffers, batch)


def vmapped_grad_step(
    model: nn.Module,
    objective: ObjectiveLike,
    params: Params,
    buffers: Params,
    batch: Any,
    optimizer: torch.optim.Optimizer,
    randomness: Literal["error", "different", "same"] = "error",
) -> Tensor:
    """One optimiser step of every member on ``batch``; returns the members' losses [K] (before it).

    ``optimizer`` holds (some of) the stacked ``params`` (e.g. ``make_optimizer(params, cfg)``);
    parameters that do not require grad are left alone.
    """
    grads, losses = vmapped_grads(model, objective, params, buffers, batch, randomness)
    for name, p in params.items():
        p.grad = grads[name].contiguous() if p.requires_grad else None
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return losses


@torch.no_grad()
def load_member(model: nn.Module, params: Params, buffers: Params, k: int) -> nn.Module:
    """Copy member ``k`` of the stacked weights into ``model`` (in place); returns it."""
    model.load_state_dict({name: t[k] for d in (params, buffers) for name, t in d.items()}, strict=False)
    return model
