"""Contrastive training: the whole tiny dataset lives on the device as tensors.

Full batch by default (every training image each step); ``train.batch_size`` switches to
minibatches drawn by index from the same device tensors. Training uses the pooled-row-only
forward, which is exact (tested against the hooked full path).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from circuits.config import RunConfig, TrainConfig
from circuits.data import World
from circuits.evaluate import evaluate
from circuits.models import HookedCLIP
from circuits.runtime import training_entry
from circuits.train.loss import clip_loss

Metrics = dict[str, float]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_optimizer(model: HookedCLIP, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on every parameter but the logit scale."""
    decay = [p for n, p in model.named_parameters() if p.requires_grad and n != "logit_scale"]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": [model.logit_scale], "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
    )


@dataclass
class TrainResult:
    model: HookedCLIP
    history: list[Metrics] = field(default_factory=list)  # one row per evaluation
    seconds: float = 0.0

    @property
    def final(self) -> Metrics:
        return self.history[-1] if self.history else {}


@training_entry  # checks threads, device and size first; runs with train.threads threads
def train(
    cfg: RunConfig,
    *,
    progress: bool = True,
    metrics_path: Path | None = None,
    on_eval: Callable[[Metrics], None] | None = None,
    pooled_only: bool = True,
) -> TrainResult:
    """Train a CLIP pair from scratch as `cfg` says; deterministic given the config.

    Every ``train.eval_every`` steps (and at the last step) the accuracies of all splits are
    computed; each row is appended to ``metrics_path`` (JSON lines) if given.

    ``pooled_only`` (default True) trains with the pooled-row-only forward of the encoders
    (exact, much faster); False runs the full hooked forward every step instead (same
    function, for benchmarks and cross-checks; see ``benchmarks/bench_train.py``).
    """
    tc = cfg.train
    device = resolve_device(tc.device)
    world = World(cfg.world)
    model = HookedCLIP(cfg, world).to(device)
    optimizer = make_optimizer(model, tc)

    data = world.train.to(device)
    caption_ids = world.train_caption_ids.to(device)  # the texts of the loss: captions of training images
    captions = world.captions.to(device)[caption_ids]
    truth = data.truth(world.n_captions)[:, caption_ids]
    sampler = torch.Generator().manual_seed(tc.seed)

    result = TrainResult(model)
    start = time.perf_counter()
    bar = tqdm(range(1, tc.steps + 1), desc="train", disable=not progress, dynamic_ncols=True)
    for step in bar:
        if tc.batch_size is None or tc.batch_size >= len(data):
            images, batch_truth = data.images, truth
        else:
            index = torch.randperm(len(data), generator=sampler)[: tc.batch_size].to(device)
            images, batch_truth = data.images[index], truth[index]
        img = torch.nn.functional.normalize(model.encode_image(images, pooled_only=pooled_only), dim=-1)
        txt = torch.nn.functional.normalize(model.encode_text(captions, pooled_only=pooled_only), dim=-1)
        loss = clip_loss(model.scale * img @ txt.T, batch_truth)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        if step % tc.eval_every == 0 or step == tc.steps:
            row = {"step": step, "loss": loss.item(), "scale": model.scale.item(), **evaluate(model, _ALL_SPLITS)}
            row["seconds"] = round(time.perf_counter() - start, 3)
            result.history.append(row)
            if metrics_path is not None:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
            if on_eval is not None:
                on_eval(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", single=f"{row['single_object']:.2f}",
                            seen=f"{row['seen_pair']:.2f}", unseen=f"{row['unseen_pair']:.2f}")
    bar.close()
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


_ALL_SPLITS = ("train_single", "train_pair", "single_object", "seen_pair", "unseen_pair")
