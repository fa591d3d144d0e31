"""Analysis latency on the default model: evaluation, term decomposition, ablation, head bias.

Loads ``--ckpt`` or trains the default model (``RunConfig()``, fast path, ``--steps``), then
times each call ``--repeat`` times and prints the best and median seconds:

* ``evaluate``            `circuits.evaluation.evaluate(model)` (pooled-only fast forward, 3 eval splits)
* ``evaluate (full)``     the same with ``pooled_only=False`` (full hooked forward)
* ``decompose``           `circuits.decompose.decompose` on the 900 unseen-pair images (all 16 score
                          terms + value sources cached)
* ``evaluate_ablation``   `circuits.ablate.evaluate_ablation(model, Ablation(terms=("EP", "PP", "BP")))`
                          (a baseline `evaluate` plus one decomposed, hooked `evaluate`)
* ``head_bias``           `circuits.stats.head_bias(model)` (vision, unseen pairs, layer 0)

    python benchmarks/bench_analysis.py                    # trains the default model first (~1 min)
    python benchmarks/bench_analysis.py --ckpt runs/XYZ --repeat 5
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Callable

import torch

import circuits
from circuits.runtime import DEFAULT_THREADS, run_script, set_threads
from circuits.ablate import Ablation, evaluate_ablation
from circuits.decompose import decompose
from circuits.stats import head_bias


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    fn()  # warm-up (first-call allocations, lazy caches)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", help="checkpoint directory to load (default: train the default model)")
    p.add_argument("--steps", type=int, default=1500, help="training steps when no --ckpt (default 1500)")
    p.add_argument("--device", default="cpu", help="cpu, cuda[:N], mps or auto (default cpu)")
    p.add_argument("--repeat", type=int, default=3, help="timed repetitions per call, after one warm-up (default 3)")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS, help=f"CPU threads for torch (default {DEFAULT_THREADS})")
    args = p.parse_args(argv)
    if args.repeat < 1 or args.threads < 1 or args.steps < 0:
        p.error("--repeat and --threads must be >= 1, --steps >= 0")
    set_threads(args.threads)

    device = circuits.train.resolve_device(args.device)
    print(f"torch {torch.__version__}  python {platform.python_version()}  device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f"  threads {torch.get_num_threads()}  cpus {os.cpu_count()}  {platform.machine()}"
          + (f"  load avg {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""))
    if args.ckpt:
        run = circuits.load(args.ckpt, device=device)
        print(f"model: {args.ckpt}")
    else:
        cfg = circuits.RunConfig().with_overrides([f"train.steps={args.steps}", f"train.device={args.device}",
                                                   f"train.threads={args.threads}"])
        t0 = time.perf_counter()
        run = circuits.train_model(cfg, progress=False)
        print(f"model: default config trained for {args.steps} steps in {time.perf_counter() - t0:.1f} s")
    model, world = run.model.eval(), run.task
    print(f"accuracies: {({k: round(v, 3) for k, v in circuits.evaluate(model, world).items()})}")
    images = world["unseen_pair"].images
    ablation = Ablation(terms=("EP", "PP", "BP"))
    calls: list[tuple[str, Callable[[], object]]] = [
        ("evaluate", lambda: circuits.evaluate(model, world)),
        ("evaluate (full)", lambda: circuits.evaluate(model, world, pooled_only=False)),
        (f"decompose ({len(images)} imgs)", lambda: decompose(model, images)),
        ("evaluate_ablation", lambda: evaluate_ablation(model, world, ablation)),
        ("head_bias", lambda: head_bias(model, world.probe())),
    ]
    print()
    print(f"{'call':<26} {'best s':>8} {'median s':>9}   (repeat {args.repeat}, after 1 warm-up)")
    for name, fn in calls:
        best, median = timed(fn, args.repeat)
        print(f"{name:<26} {best:>8.3f} {median:>9.3f}", flush=True)


if __name__ == "__main__":
    sys.exit(run_script(main))
