"""The training loop (`fit`) and the default recipe (`train`) composed from swappable parts.

`fit(model, objective, batches, optimizer, steps)` is generic over any ``nn.Module``, any
objective ``loss(model, batch)`` and any iterator of batches. `train(cfg)` is the paper's CLIP
recipe: `HookedCLIP` + `ClipObjective` + the world's training tensors (`clip_batch`), full
batch or seeded minibatches (`circuits.train.batches`), AdamW (`make_optimizer`), evaluating
every split every ``train.eval_every`` steps. The whole tiny dataset lives on the device.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from circuits.checkpoint import Run, new_model, resolve_device
from circuits.config import RunConfig, TrainConfig
from circuits.data import World
from circuits.evaluation import evaluate
from circuits.runtime import training_entry
from circuits.tasks import build_task
from circuits.train.batches import batches
from circuits.tasks import Task
from circuits.train.objective import CaptionObjective, ClipBatch, ClipObjective, LossFn, ObjectiveLike, loss_function

Metrics = dict[str, float]
Step = Callable[[nn.Module, LossFn, Any, torch.optim.Optimizer], Tensor]


def optimizer_step(model: nn.Module, loss_fn: LossFn, batch: Any, optimizer: torch.optim.Optimizer) -> Tensor:
    """One step of ``optimizer`` on ``loss_fn(model, batch)``; returns the loss (before the step)."""
    loss = loss_fn(model, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def fit(
    model: nn.Module,
    objective: ObjectiveLike,
    batches: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    steps: int,
    *,
    evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None,
    eval_every: int = 100,
    log: Callable[[Metrics], None] | None = None,
    metrics_path: Path | None = None,
    progress: bool = True,
    show: Sequence[str] = (),
    step: Step = optimizer_step,
    step_losses: bool = False,
) -> list[Metrics]:
    """Train ``model`` for ``steps`` steps; return the metrics rows (one per evaluation).

    Each step takes the next batch of ``batches`` and runs ``step`` (default: zero grads,
    backward, ``optimizer.step()``). Every ``eval_every`` steps and at the last one a row
    ``{"step", "loss", **evaluate(model), "seconds"}`` is recorded ("loss" is that step's
    training loss, "seconds" since the start); it is appended to ``metrics_path`` (JSON lines)
    and passed to ``log``. The progress bar shows the loss and the row's keys in ``show``.
    With ``step_losses`` the row also holds ``"step_losses"``: the training loss of every step
    since the previous row, this one included (kept on the device, read once per row; App. D).

    Your own model and loss, with the toolkit's loop, metrics file and progress bar::

        from pathlib import Path
        import torch
        from circuits.train import fit, minibatches

        model = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
        x = torch.randn(1000, 2)
        data = (x, x.prod(dim=1, keepdim=True))              # learn x0 * x1

        def mse(model, batch):                                 # an objective: (model, batch) -> scalar
            inputs, target = batch
            return torch.nn.functional.mse_loss(model(inputs), target)

        history = fit(
            model, mse, minibatches(data, 64, seed=0), torch.optim.AdamW(model.parameters(), lr=1e-2),
            steps=2000, eval_every=200, metrics_path=Path("metrics.jsonl"), show=["test"],
            evaluate=lambda m: {"test": mse(m, data).item()},
        )
        history[-1]    # {"step": 2000, "loss": ..., "test": ..., "seconds": ...}

    An object with a ``loss(model, batch)`` method (an `Objective`, e.g. `ClipObjective`) works
    in place of ``mse``; `full_batch(data)` gives the whole data every step.
    """
    loss_fn, batch_iter, history, pending = loss_function(objective), iter(batches), [], []
    start = time.perf_counter()
    bar = tqdm(range(1, steps + 1), desc="train", disable=not progress, dynamic_ncols=True)
    for n in bar:
        loss = step(model, loss_fn, next(batch_iter), optimizer)
        if step_losses:
            pending.append(loss.detach())
        if n % eval_every == 0 or n == steps:
            row = {"step": n, "loss": loss.item(), **(evaluate(model) if evaluate is not None else {})}
            if step_losses:
                row["step_losses"], pending = torch.stack(pending).tolist(), []
            row["seconds"] = round(time.perf_counter() - start, 3)
            history.append(row)
            if metrics_path is not None:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
            if log is not None:
                log(row)
            bar.set_postfix({k: f"{row[k]:.3f}" for k in ("loss", *show) if k in row})
    bar.close()
    return history


def make_optimizer(
    model: nn.Module | Mapping[str, Tensor], cfg: TrainConfig, no_decay: Sequence[str] = ("logit_scale",)
) -> torch.optim.AdamW:
    """AdamW with weight decay on every trainable parameter but those named in ``no_decay``.

    ``model`` is a module or a name -> tensor mapping (e.g. stacked parameters, see
    `circuits.train.functional`).
    """
    named = list(model.named_parameters() if isinstance(model, nn.Module) else model.items())
    trainable = [(n, p) for n, p in named if p.requires_grad]
    return torch.optim.AdamW(
        [
            {"params": [p for n, p in trainable if n not in no_decay], "weight_decay": cfg.weight_decay},
            {"params": [p for n, p in trainable if n in no_decay], "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
    )


TrainResult = Run  # what `train` returns: config, model, task, history, seconds


def clip_batch(world: World, device: torch.device) -> ClipBatch:
    """The training set of ``world`` as one `ClipBatch` on ``device``: every training image, and
    as texts the captions of training images."""
    data = world.train.to(device)
    caption_ids = world.train_caption_ids.to(device)
    chosen = torch.searchsorted(caption_ids, data.captions.contiguous())  # each image's own text, as a column of the batch
    truth = data.truth(world.n_captions)[:, caption_ids]
    return ClipBatch(data.images, world.captions.to(device)[caption_ids], truth, chosen)


def training_setup(
    cfg: RunConfig, task: Task, device: torch.device, pooled_only: bool = True
) -> tuple[ObjectiveLike, Any, Callable[[nn.Module], Metrics]]:
    """(objective, training batch, extra metrics of a model) for ``cfg.model.kind``: the CLIP
    loss on the world's images and captions (plus the logit scale), or the caption loss of a
    prefix-LM on its teacher-forced sequences. The one place the recipe depends on the kind."""
    if cfg.model.kind == "prefix_lm":
        return CaptionObjective(), task.train_batch(device), lambda m: {}
    return ClipObjective(pooled_only, cfg.train.loss), clip_batch(task, device), lambda m: {"scale": m.scale.item()}


@training_entry  # checks threads, device and size first; runs with train.threads threads
def train(
    cfg: RunConfig,
    *,
    progress: bool = True,
    metrics_path: Path | None = None,
    on_eval: Callable[[Metrics], None] | None = None,
    pooled_only: bool = True,
) -> Run:
    """Train a model from scratch as `cfg` says; deterministic given the config.

    The default composition of `fit`: `new_model` (``model.kind``: `HookedCLIP` or
    `HookedPrefixLM`), the kind's objective and training set (`training_setup`), the training set
    (full batch, or seeded minibatches of ``train.batch_size``), `make_optimizer`. Every
    ``train.eval_every`` steps (and at the last step) the logit scale and the accuracies of
    all splits are recorded; each row is appended to ``metrics_path`` (JSON lines) if given
    and passed to ``on_eval``. ``pooled_only``: see `ClipObjective`. Top level:
    ``circuits.train_model`` (``circuits.train`` is this package).
    """
    tc = cfg.train
    device = resolve_device(tc.device)
    world = build_task(cfg)
    model = new_model(cfg, world).to(device)
    objective, data, extra = training_setup(cfg, world, device, pooled_only)

    start = time.perf_counter()
    history = fit(
        model, objective, batches(data, tc.batch_size, seed=tc.seed), make_optimizer(model, tc), tc.steps,
        evaluate=lambda m: {**extra(m), **evaluate(m, world, world.split_names)}, eval_every=tc.eval_every,
        log=on_eval, metrics_path=metrics_path, progress=progress, show=world.eval_splits, step_losses=True,
    )
    model.eval()
    return Run(cfg, model, world, history, seconds=time.perf_counter() - start)
