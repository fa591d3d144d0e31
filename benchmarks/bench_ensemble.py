"""Ensemble training throughput on one device: model-steps/s of K stacked default models.

    PYTHONPATH=$PWD python benchmarks/bench_ensemble.py --device cuda --ks 1,8,32,64,128,256
    PYTHONPATH=$PWD python benchmarks/bench_ensemble.py --device cpu --ks 1,4 --steps 20   # smoke

For each K: K default models (``RunConfig()``, seeds 0..K-1) stacked as `train_ensemble` stacks
them, then ``--steps`` timed calls of `vmapped_grad_step` (after ``--warmup`` untimed ones),
the device synchronised before and after; evaluation and checkpoint writing are excluded (the
sweep benchmark, ``bench_sweep.py``, includes them). The baseline in the same run is one model
trained alone with the same step (K = 1 is that baseline stacked; ``single`` is `fit`'s plain
step on an unstacked model). Prints a table; nothing is asserted.

``--check`` first trains 4 members for 50 steps on the device and prints the largest weight
difference to the same 4 runs trained alone there (the CPU test of that equality is
``tests/train/test_ensemble.py``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch

from circuits.checkpoint import resolve_device
from circuits.config import RunConfig
from circuits.models import HookedCLIP
from circuits.runtime import run_script, set_threads
from circuits.tasks import build_task
from circuits.train.ensemble import _dense_loss, train_ensemble
from circuits.train.functional import stack_models, vmapped_grad_step
from circuits.train.loop import clip_batch, make_optimizer, optimizer_step
from circuits.train.loop import train as train_model
from circuits.train.objective import ClipObjective


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check(device: str, steps: int = 50, k: int = 4) -> tuple[float, float]:
    """(largest |weight difference|, largest |metric difference| over the history) between the
    members of `train_ensemble` and the same configs trained alone by `train`, on ``device``."""
    cfgs = [RunConfig().with_overrides([f"train.seed={s}", f"train.steps={steps}", f"train.eval_every={steps // 5}",
                                        f"train.device={device}"]) for s in range(k)]
    stacked = train_ensemble(cfgs)
    worst_w = worst_m = 0.0
    for cfg, member in zip(cfgs, stacked):
        alone = train_model(cfg, progress=False)
        a, b = member.model.state_dict(), alone.model.state_dict()
        worst_w = max(worst_w, max((a[n].float() - b[n].float()).abs().max().item() for n in a))
        for ra, rb in zip(member.history, alone.history):
            worst_m = max(worst_m, *(abs(ra[key] - rb[key]) for key in member.task.split_names))
    return worst_w, worst_m


def stack(k: int, device: torch.device, dtype: torch.dtype = torch.float32):
    """K default models (seeds 0..K-1) on one world, their stacked state, its AdamW and the batch."""
    cfgs = [RunConfig().with_overrides([f"train.seed={s}", f"train.device={device}"]) for s in range(k)]
    world = build_task(cfgs[0])
    models = [HookedCLIP.for_task(c, world).to(device, dtype) for c in cfgs]
    data = clip_batch(world, device)
    params, buffers = stack_models(models)
    return models, params, buffers, make_optimizer(params, cfgs[0].train), (data.images, data.captions, data.truth)


def check_dtype(device: torch.device, dtype: torch.dtype, steps: int = 50, k: int = 4) -> float:
    """Largest |weight difference| after ``steps`` between K stacked models and the same K models
    stepped one by one, all in ``dtype``: float64 separates rounding (amplified by Adam) from error."""
    models, params, buffers, optimizer, batch = stack(k, device, dtype)
    for _ in range(steps):
        vmapped_grad_step(models[0], _dense_loss, params, buffers, batch, optimizer)
    worst = 0.0
    for i, model in enumerate(models):
        opt = make_optimizer(model, RunConfig().train)
        for _ in range(steps):
            optimizer_step(model, _dense_loss, batch, opt)
        for name, p in model.named_parameters():
            worst = max(worst, (params[name][i] - p.detach()).abs().max().item())
    return worst


def rate(k: int, steps: int, warmup: int, device: torch.device) -> tuple[float, float]:
    """(model-steps/s, ms per stacked step) of K stacked default models."""
    models, params, buffers, optimizer, batch = stack(k, device)
    for _ in range(warmup):
        vmapped_grad_step(models[0], _dense_loss, params, buffers, batch, optimizer)
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        vmapped_grad_step(models[0], _dense_loss, params, buffers, batch, optimizer)
    _sync(device)
    seconds = time.perf_counter() - start
    return k * steps / seconds, 1000 * seconds / steps


def single_rate(steps: int, warmup: int, device: torch.device) -> float:
    """Model-steps/s of one unstacked default model with `fit`'s step (no evaluation)."""
    cfg = RunConfig().with_overrides([f"train.device={device}"])
    world = build_task(cfg)
    model = HookedCLIP.for_task(cfg, world).to(device)
    data = clip_batch(world, device)
    optimizer = make_optimizer(model, cfg.train)
    objective = ClipObjective()
    for _ in range(warmup):
        optimizer_step(model, objective.loss, data, optimizer)
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        optimizer_step(model, objective.loss, data, optimizer)
    _sync(device)
    return steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--ks", default="1,8,32,64,128")
    p.add_argument("--steps", type=int, default=100, help="timed stacked steps per K")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--check", action="store_true", help="first compare 4 members with their single twins")
    args = p.parse_args(argv)
    set_threads(args.threads)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"torch {torch.__version__}  device {device} ({name})  threads {torch.get_num_threads()}  cpus {os.cpu_count()}",
          flush=True)
    if args.check:
        w, m = check(str(device))
        print(f"ensemble vs single twins, 4 members x 50 steps: max |weight diff| {w:.2e}, max |metric diff| {m:.2e}",
              flush=True)
        for dtype in (torch.float32, torch.float64):
            print(f"  stacked vs one-by-one steps in {dtype}: max |weight diff| {check_dtype(device, dtype):.2e}", flush=True)
    base = single_rate(args.steps, args.warmup, device)
    print(f"single model, fit's step: {base:.1f} model-steps/s", flush=True)
    rows = [("single (fit)", base, 1000 / base)]
    for k in (int(x) for x in args.ks.split(",")):
        r, ms = rate(k, args.steps, args.warmup, device)
        print(f"K={k:4d}: {r:9.1f} model-steps/s  {ms:7.2f} ms per stacked step", flush=True)
        rows.append((f"ensemble K={k}", r, ms))
    print("\n| executor | model-steps/s | ms per step | ratio to single |\n|---|---|---|---|")
    for label, r, ms in rows:
        print(f"| {label} | {r:.1f} | {ms:.2f} | {r / base:.2f} |")


if __name__ == "__main__":
    sys.exit(run_script(main))
