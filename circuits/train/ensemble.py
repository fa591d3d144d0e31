"""Vectorised ensembles: K runs of one architecture trained together in one process.

`train_ensemble(cfgs)` trains the members with `circuits.train.functional` (stacked weights,
``vmap`` of the loss gradient, one AdamW over the stacked tensors) and returns one `Run` per
member, each equal to what `circuits.train_model(cfg)` gives for that config alone (same
weights and metrics up to float rounding; ``tests/train/test_ensemble.py``). Which configs can
share a stack is `ensemble_key`: members may differ in ``train.seed`` and init scales; the
world (``world.*``, its seed included), the architecture and the optimiser (lr, weight decay,
steps, evaluation cadence) must be equal. Members share one world because the pooled fast
path caches token-dependent plans per batch, which ``vmap`` over per-member images cannot use.
Full batches only (no minibatches) and no dropout: members then see exactly their single-run data.

Speed: on CPU an ensemble is at parity with single runs per model-step (the pooled first layer
is one autograd function whose vmap rule batches its matmuls over the members;
``benchmarks/bench_sweep.py``, numbers in docs/sweeps.md): it saves memory and world building,
not time. Ensembles pay on GPUs, where one tiny model cannot fill the device.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Sequence

import torch

from circuits.checkpoint import Run, resolve_device
from circuits.config import RunConfig
from circuits.evaluation import evaluate
from circuits.models import HookedCLIP
from circuits.runtime import preflight, threads
from circuits.tasks import build_task
from circuits.train.functional import load_member, stack_models, vmapped_grad_step
from circuits.train.loop import clip_batch, make_optimizer
from circuits.train.loss import clip_loss_of_embeddings

# per-member fields: they change the initial weights or the data, not any shape or the optimiser
MEMBER_FIELDS = (("train", "seed"), ("train", "threads"))
MEMBER_ENCODER_FIELDS = ("init_embed_std", "init_pos_std", "init_weight_std")


def ensemble_key(cfg: RunConfig) -> str | None:
    """Configs with equal keys can be trained in one stack; None: this config cannot be stacked
    (minibatches, dropout, a loss or positives other than the default multi-positive CLIP loss
    of `clip_loss_all_present`, or a prefix-LM: members would not equal their single runs)."""
    m, t = cfg.model, cfg.train
    if t.batch_size is not None or m.vision.dropout > 0 or m.text.dropout > 0:
        return None
    if m.kind != "clip" or t.loss != "soft_targets" or t.positives != "all_true":
        return None
    data = cfg.to_dict()
    for section, key in MEMBER_FIELDS:
        data[section].pop(key, None)
    for side in ("vision", "text"):
        for key in MEMBER_ENCODER_FIELDS:
            data["model"][side].pop(key, None)
    return json.dumps(data, sort_keys=True)


def _dense_loss(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    images, captions, truth = batch  # a full batch: every caption is present (clip_batch)
    img = model.encode_image(images, pooled_only=True)
    txt = model.encode_text(captions, pooled_only=True)
    return clip_loss_of_embeddings(img, txt, model.scale, truth)  # as `ClipObjective`: members equal single runs


def train_ensemble(
    cfgs: Sequence[RunConfig],
    *,
    on_eval: Callable[[int, dict], None] | None = None,
    metrics_paths: Sequence[Any] | None = None,
) -> list[Run]:
    """Train every config of ``cfgs`` (equal `ensemble_key`) in one vectorised stack; one `Run` each.

    Every ``train.eval_every`` steps (and at the last) each member is evaluated as a single run
    is; its row goes to ``on_eval(k, row)`` and is appended to ``metrics_paths[k]`` if given.
    A row's "seconds" is the ensemble's wall time so far (the members train together).
    """
    cfgs = list(cfgs)
    if not cfgs:
        return []
    keys = {ensemble_key(c) for c in cfgs}
    if None in keys or len(keys) > 1:
        from circuits.errors import ConfigError

        raise ConfigError("these configs cannot share an ensemble: they differ in more than seeds and init"
                          " scales, or use minibatches / dropout / a non-default loss (see circuits.train.ensemble.ensemble_key)")
    tc = cfgs[0].train
    for cfg in cfgs:
        preflight(cfg)
    with threads(tc.threads):
        device = resolve_device(tc.device)
        worlds = [build_task(c) for c in cfgs]
        models = [HookedCLIP.for_task(c, w).to(device) for c, w in zip(cfgs, worlds)]
        data = [clip_batch(worlds[0], device)]
        batch = (data[0].images, data[0].captions, data[0].truth)  # one world (ensemble_key)
        params, buffers = stack_models(models)
        optimizer = make_optimizer(params, tc)
        shape = models[0]
        histories: list[list[dict]] = [[] for _ in cfgs]
        start = time.perf_counter()
        pending: list[torch.Tensor] = []  # every step's losses [K], kept on the device until a row is written
        for n in range(1, tc.steps + 1):
            losses = vmapped_grad_step(shape, _dense_loss, params, buffers, batch, optimizer)
            pending.append(losses.detach())
            if n % tc.eval_every == 0 or n == tc.steps:
                step_losses, pending = torch.stack(pending).T.tolist(), []  # [K][steps], as `fit(step_losses=True)`
                for k, (model, world) in enumerate(zip(models, worlds)):
                    load_member(model, params, buffers, k)
                    row = {"step": n, "loss": losses[k].item(), "scale": model.scale.item(),
                           **evaluate(model, world, world.split_names), "step_losses": step_losses[k]}
                    row["seconds"] = round(time.perf_counter() - start, 3)
                    histories[k].append(row)
                    if metrics_paths is not None:
                        with open(metrics_paths[k], "a") as f:
                            f.write(json.dumps(row) + "\n")
                    if on_eval is not None:
                        on_eval(k, row)
        seconds = time.perf_counter() - start
        runs = []
        for k, (cfg, model, world) in enumerate(zip(cfgs, models, worlds)):
            load_member(model, params, buffers, k)
            model.eval()
            runs.append(Run(cfg, model, world, histories[k], seconds=seconds))
        return runs
