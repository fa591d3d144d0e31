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
from jaxtyping import Int
from torch import Tensor, nn
from tqdm.auto import tqdm

from circuits.checkpoint import Run, new_model, resolve_device
from circuits.config import RunConfig, TrainConfig
from circuits.data import World
from circuits.errors import ConfigError
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
    """AdamW with weight decay on every trainable parameter but those named in ``no_decay``
    (torch's fused implementation where it runs: float parameters on CPU or CUDA).

    ``model`` is a module or a name -> tensor mapping (e.g. stacked parameters, see
    `circuits.train.functional`).
    """
    named = list(model.named_parameters() if isinstance(model, nn.Module) else model.items())
    trainable = [(n, p) for n, p in named if p.requires_grad]
    # torch's fused kernel (one pass per tensor; ~3x faster than the per-tensor loop on CPU for
    # the default model) where it exists: float parameters on one CPU or CUDA device
    devices = {p.device.type for _, p in trainable}
    fused = len(devices) == 1 and devices <= {"cpu", "cuda"} and all(p.is_floating_point() for _, p in trainable)
    return torch.optim.AdamW(
        [
            {"params": [p for n, p in trainable if n not in no_decay], "weight_decay": cfg.weight_decay},
            {"params": [p for n, p in trainable if n in no_decay], "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        **({"fused": True} if fused else {}),
    )


TrainResult = Run  # what `train` returns: config, model, task, history, seconds


def clip_batch(world: World, device: torch.device, positives: str = "all_true") -> ClipBatch:
    """The training set of ``world`` as one `ClipBatch` on ``device``: every training image, and
    as texts the captions of training images.

    Each image's chosen text is its canonical caption (``positives="all_true"``) or one of its
    true captions drawn once from ``world.cfg.seed`` (``"one_drawn"``, `train.positives`).
    """
    if positives not in ("all_true", "one_drawn"):
        raise ConfigError(f"positives must be 'all_true' or 'one_drawn' (got {positives!r})")
    data = world.train.to(device)
    caption_ids = world.train_caption_ids.to(device)
    own = data.captions if positives == "all_true" else draw_caption(world.train.true_captions, world.cfg.seed).to(device)
    chosen = torch.searchsorted(caption_ids, own.contiguous())  # each image's own text, as a column of the batch
    truth = data.truth(world.n_captions)[:, caption_ids]
    return ClipBatch(data.images, world.captions.to(device)[caption_ids], truth, chosen)


def draw_caption(true_captions: Int[Tensor, "n k"], seed: int) -> Int[Tensor, " n"]:
    """One of each row's true captions (entries >= 0), uniformly, reproducibly from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.rand(true_captions.shape, generator=gen).masked_fill(true_captions.cpu() < 0, -1.0)
    return true_captions.cpu().gather(1, scores.argmax(1, keepdim=True)).squeeze(1)


def training_setup(
    cfg: RunConfig, task: Task, device: torch.device, pooled_only: bool = True
) -> tuple[ObjectiveLike, Any, Callable[[nn.Module], Metrics]]:
    """(objective, training batch, extra metrics of a model) for ``cfg.model.kind``: the CLIP
    loss on the world's images and captions (plus the logit scale), or the caption loss of a
    prefix-LM on its teacher-forced sequences. The one place the recipe depends on the kind."""
    if cfg.model.kind == "prefix_lm":
        return CaptionObjective(), task.train_batch(device), lambda m: {}
    return ClipObjective(pooled_only, cfg.train.loss, cfg.train.positives), clip_batch(task, device, cfg.train.positives), lambda m: {"scale": m.scale.item()}


def batch_size(tc: TrainConfig, task: Task) -> int | None:
    """``train.batch_size``, or when it is null the task's ``default_batch_size`` if it has one
    (the toy 2DS: 256), else None (full batch: the relation worlds)."""
    return tc.batch_size if tc.batch_size is not None else getattr(task, "default_batch_size", None)


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
        model, objective, batches(data, batch_size(tc, world), seed=tc.seed), make_optimizer(model, tc), tc.steps,
        evaluate=lambda m: {**extra(m), **evaluate(m, world, world.split_names)}, eval_every=tc.eval_every,
        log=on_eval, metrics_path=metrics_path, progress=progress, show=world.eval_splits, step_losses=True,
    )
    model.eval()
    return Run(cfg, model, world, history, seconds=time.perf_counter() - start)
