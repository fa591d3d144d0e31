"""Head pruning with continued training (App. P, Fig. 25; specs A14).

A pruned model keeps a subset of one attention layer's heads. It is built as a fixed head mask
(the spec's "equivalent implementation"): the removed heads' slices of W_Q, W_K, W_V, b_Q, b_K,
b_V and W_O are set to zero, so their ``hook_z`` is exactly zero and they add nothing to the
residual stream; every other parameter is copied. Head indices stay those of the original
model, so L/R biases and decompositions of the kept heads read as before, and the checkpoint
is an ordinary one. During continued training a gradient hook zeroes the removed slices'
gradients; with AdamW a parameter that is zero and gets zero gradient stays exactly zero
(the moments stay zero and decoupled weight decay multiplies by 1 - lr * wd), so the removed
heads receive no update and no weight decay.

::

    result = prune_and_retrain(circuits.load("runs/default"), keep=(0, 2), steps=1500)
    result.before["unseen_pair"], result.after["unseen_pair"]
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from circuits.atomic import atomic_directory
from circuits.checkpoint import METRICS, PathLike, Run, resolve_device, target_path, write_model
from circuits.decompose import check_layer, get_encoder
from circuits.errors import CircuitsError
from circuits.evaluation import evaluate
from circuits.models import HookedCLIP
from circuits.train import ClipObjective, batches, clip_batch, fit, make_optimizer

PRUNE_FILE = "prune.json"  # beside config.json: what was pruned and the metrics before and after
HEAD_PARAMS = ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V")  # heads-first slices (TransformerLens layout)


@dataclass(frozen=True)
class Pruning:
    """Which heads of which attention layer survive."""

    keep: tuple[int, ...]
    layer: int = 0
    encoder: str = "vision"

    def to_dict(self) -> dict:
        return {**asdict(self), "keep": list(self.keep)}


def check_pruning(model: HookedCLIP, pruning: Pruning) -> Pruning:
    """``pruning`` with its layer resolved (negative counts from the end); a one-line
    `CircuitsError` for a head that does not exist, no head kept, or every head kept."""
    enc = get_encoder(model, pruning.encoder)
    layer = check_layer(enc, pruning.layer)
    n = enc.cfg.n_heads
    bad = [h for h in pruning.keep if not 0 <= h < n]
    if bad:
        raise CircuitsError(f"--keep names head {bad[0]}, but the {pruning.encoder} encoder has heads 0..{n - 1}")
    keep = tuple(sorted(set(pruning.keep)))
    if not keep:
        raise CircuitsError("--keep must keep at least one head")
    if len(keep) == n:
        raise CircuitsError(f"--keep keeps all {n} heads: nothing to prune")
    return Pruning(keep, layer, pruning.encoder)


def head_mask(model: HookedCLIP, pruning: Pruning) -> Tensor:
    """``mask[h]`` = 1.0 for a kept head, 0.0 for a removed one (float, on the model's device)."""
    enc = get_encoder(model, pruning.encoder)
    mask = torch.zeros(enc.cfg.n_heads, device=enc.blocks[pruning.layer].attn.W_Q.device)
    mask[list(pruning.keep)] = 1.0
    return mask


def _head_params(model: HookedCLIP, pruning: Pruning) -> list[torch.nn.Parameter]:
    attn = get_encoder(model, pruning.encoder).blocks[pruning.layer].attn
    return [getattr(attn, name) for name in HEAD_PARAMS]


def _copy(source: HookedCLIP | Run) -> HookedCLIP:
    """A fresh model with the weights of ``source``. A `Run` is rebuilt from its config (a trained
    model may hold cached sparse index plans of the pooled path, which ``deepcopy`` cannot copy)."""
    if isinstance(source, Run):
        fresh = HookedCLIP.for_task(source.cfg, source.task).to(source.model.device)
        fresh.load_state_dict(source.model.state_dict())
        return fresh.train(source.model.training)
    return copy.deepcopy(source)


def prune(model: HookedCLIP | Run, pruning: Pruning) -> HookedCLIP:
    """A copy of ``model`` (or of a `Run`'s model) whose removed heads (layer ``pruning.layer``)
    have all-zero weights; equal to the model with those heads' ``hook_z`` zeroed (App. P, A14)."""
    pruning = check_pruning(model.model if isinstance(model, Run) else model, pruning)
    pruned = _copy(model)
    mask = head_mask(pruned, pruning)
    with torch.no_grad():
        for p in _head_params(pruned, pruning):
            p.mul_(mask.view(-1, *([1] * (p.dim() - 1))))
    return pruned


def freeze_removed_heads(model: HookedCLIP, pruning: Pruning) -> list:
    """Gradient hooks that zero the removed heads' gradients (keep them until training ends;
    each returned handle's ``remove()`` detaches it)."""
    mask = head_mask(model, pruning)
    handles = []
    for p in _head_params(model, pruning):
        if p.requires_grad:
            shaped = mask.view(-1, *([1] * (p.dim() - 1)))
            handles.append(p.register_hook(lambda g, m=shaped: g * m))
    return handles


@dataclass
class PruneResult:
    """The pruned model after continued training, and the metrics right after pruning and after."""

    run: Run  # the continued-trained model; ``run.history`` holds the continued training's rows
    pruning: Pruning
    before: dict[str, float]  # pruned, not retrained
    after: dict[str, float]  # after ``steps`` steps of continued training
    original: dict[str, float] = field(default_factory=dict)  # the unpruned model
    steps: int = 0

    def to_dict(self) -> dict:
        return {"pruning": self.pruning.to_dict(), "steps": self.steps, "original": self.original,
                "before": self.before, "after": self.after}


def prune_and_retrain(run: Run, keep: tuple[int, ...], *, layer: int = 0, encoder: str = "vision",
                      steps: int | None = None, progress: bool = False) -> PruneResult:
    """Prune ``run.model`` to the heads ``keep``, evaluate, continue training with the run's own
    recipe (loss, batches, AdamW hyper-parameters) and a fresh optimiser for ``steps`` steps
    (None: the run's ``train.steps``, the spec's CHOICE), evaluate again (App. P, Fig. 25)."""
    cfg, task = run.cfg, run.task
    pruning = check_pruning(run.model, Pruning(tuple(keep), layer, encoder))
    steps = cfg.train.steps if steps is None else steps
    if steps < 0:
        raise CircuitsError(f"--steps must be >= 0 (got {steps})")
    device = resolve_device(cfg.train.device)
    original = evaluate(run.model, task)
    model = prune(run, pruning).to(device)
    before = evaluate(model, task)
    tc = cfg.train
    handles = freeze_removed_heads(model, pruning)
    model.train()
    try:
        history = fit(
            model, ClipObjective(True, tc.loss, tc.positives), batches(clip_batch(task, device, tc.positives), tc.batch_size, seed=tc.seed),
            make_optimizer(model, tc), steps, evaluate=lambda m: evaluate(m, task, task.split_names),
            eval_every=tc.eval_every, progress=progress, show=("unseen_pair",),
        )
    finally:
        for h in handles:
            h.remove()
    model.eval()
    after = evaluate(model, task)
    out = Run(cfg, model, task, history)
    return PruneResult(out, pruning, before, after, original, steps)


def save_pruned(result: PruneResult, directory: PathLike, *, force: bool = False, source: str | None = None) -> None:
    """Write the continued-trained model as an ordinary checkpoint at ``directory`` (atomic),
    with ``prune.json`` (the pruning, the source checkpoint and the three metric sets) beside it."""
    target = target_path(directory)
    with atomic_directory(target, force=force) as tmp:
        write_model(result.run.cfg, result.run.model, tmp)
        with open(tmp / METRICS, "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in result.run.history)
        (tmp / PRUNE_FILE).write_text(json.dumps({"source": source, **result.to_dict()}, indent=2) + "\n")
    result.run.path = target
