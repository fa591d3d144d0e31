"""Training throughput: pooled-row-only fast path vs the full hooked forward.

For each path, trains the default model (``RunConfig()``, with ``--steps`` / ``--eval-every``)
from scratch with `circuits.train.train(cfg, pooled_only=...)` and prints

* model-steps per second (mean over steps 2..N) and the median ms per step, counting only
  optimisation steps (evaluation time excluded; step 1 = setup + warm-up is shown apart);
* the first evaluated step whose unseen-pair accuracy is >= ``--target`` (default 0.9), with
  the training seconds to reach it (evaluations excluded) and the wall seconds (included);
* the accuracies of the last evaluation;

and, when both run, the fast/full speed-up measured in the same process. Both paths compute
the same function (the fast path is exact), so the learning curves agree up to float rounding.

    python benchmarks/bench_train.py                      # both paths, 1500 steps, cpu
    python benchmarks/bench_train.py --stop-at-target     # each path ends at the target (full path: ~10 min)
    python benchmarks/bench_train.py --paths fast --steps 300 --device cuda
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch

import circuits.train.loop as loop
from circuits.config import RunConfig
from circuits.runtime import DEFAULT_THREADS, preflight, run_script, set_threads


class _Stop(Exception):
    """Raised from ``on_eval`` to end training once the target is reached (--stop-at-target)."""


def run(path: str, cfg: RunConfig, target: float, stop_at_target: bool = False) -> dict:
    """Train once; time every optimisation step (a step ends at ``optimizer.step()``; time spent
    in evaluation is not charged to the next step)."""
    durations: list[float] = []  # seconds of each step; the first includes setup and warm-up
    mark = 0.0
    eval_seconds = 0.0
    evaluate, make_optimizer = loop.evaluate, loop.make_optimizer

    def timed_evaluate(*args, **kwargs):  # same for both paths: kept out of the step times
        nonlocal eval_seconds, mark
        t0 = time.perf_counter()
        try:
            return evaluate(*args, **kwargs)
        finally:
            mark = time.perf_counter()
            eval_seconds += mark - t0

    def timed_optimizer(*args, **kwargs):
        optimizer = make_optimizer(*args, **kwargs)

        def after_step(*_):
            nonlocal mark
            now = time.perf_counter()
            durations.append(now - mark)
            mark = now

        optimizer.register_step_post_hook(after_step)
        return optimizer

    hit: dict | None = None
    last: dict = {}

    def on_eval(row: dict) -> None:
        nonlocal hit, last
        last = row
        if hit is None and row["unseen_pair"] >= target:
            hit = {**row, "train_s": sum(durations[: row["step"]])}
            if stop_at_target:
                raise _Stop

    loop.evaluate, loop.make_optimizer = timed_evaluate, timed_optimizer
    try:
        start = mark = time.perf_counter()
        try:
            loop.train(cfg, progress=False, on_eval=on_eval, pooled_only=(path == "fast"))
        except _Stop:
            pass
        wall = time.perf_counter() - start
    finally:
        loop.evaluate, loop.make_optimizer = evaluate, make_optimizer
    steady = sorted(durations[1:]) or durations
    return {
        "path": path,
        "wall_s": wall,
        "train_s": sum(durations),
        "eval_s": eval_seconds,
        "first_step_s": durations[0] if durations else float("nan"),
        "steps_per_s": len(steady) / sum(steady) if steady else float("nan"),
        "median_ms": 1000 * steady[len(steady) // 2] if steady else float("nan"),
        "steps": len(durations),
        "final": last,
        "hit_step": hit["step"] if hit else None,
        "hit_wall_s": hit["seconds"] if hit else None,  # as logged by train(): evaluations included
        "hit_train_s": hit["train_s"] if hit else None,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1500, help="training steps per path (default 1500, the recipe)")
    p.add_argument("--eval-every", type=int, default=50, help="steps between evaluations (default 50)")
    p.add_argument("--device", default="cpu", help="cpu, cuda[:N], mps or auto (default cpu)")
    p.add_argument("--paths", default="fast,full", help="comma-separated subset of fast,full (default both)")
    p.add_argument("--target", type=float, default=0.9, help="unseen-pair accuracy to time (default 0.9)")
    p.add_argument("--stop-at-target", action="store_true",
                   help="end each run at the first evaluation that reaches --target (makes the slow full path affordable)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override, e.g. --set model.vision.n_layers=2 (repeatable)")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS, help=f"CPU threads for torch (default {DEFAULT_THREADS})")
    args = p.parse_args(argv)

    paths = [x.strip() for x in args.paths.split(",") if x.strip()]
    bad = [x for x in paths if x not in ("fast", "full")]
    if bad or not paths:
        p.error(f"--paths takes fast, full or fast,full (got {args.paths!r})")
    cfg = RunConfig().with_overrides(
        [f"train.steps={args.steps}", f"train.eval_every={args.eval_every}", f"train.device={args.device}",
         f"train.threads={args.threads}", *args.overrides]
    )
    preflight(cfg)  # device, size, steps: one line and exit 2, before any work
    set_threads(cfg.train.threads)
    device = loop.resolve_device(cfg.train.device)

    print(f"torch {torch.__version__}  python {platform.python_version()}  device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f"  threads {torch.get_num_threads()}  cpus {os.cpu_count()}  {platform.machine()}"
          + (f"  load avg {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""))
    print(f"config: steps {cfg.train.steps}, eval_every {cfg.train.eval_every}, target unseen_pair >= {args.target}"
          + (f", overrides {args.overrides}" if args.overrides else ""))
    print()
    print(f"{'path':<5} {'steps/s':>8} {'ms/step':>8} {'1st step':>8} {'train s':>8} {'eval s':>7} {'wall s':>7} {'steps':>6}"
          f"   {'target at step':>14} {'train s':>8} {'wall s':>7}   last eval unseen/seen/single")
    results = {}
    for path in paths:
        r = run(path, cfg, args.target, args.stop_at_target)
        results[path] = r
        f = r["final"]
        hit = (f"{r['hit_step']:>14} {r['hit_train_s']:>8.1f} {r['hit_wall_s']:>7.1f}" if r["hit_step"]
               else f"{'not reached':>14} {'-':>8} {'-':>7}")
        print(f"{path:<5} {r['steps_per_s']:>8.1f} {r['median_ms']:>8.1f} {r['first_step_s']:>8.2f} {r['train_s']:>8.1f}"
              f" {r['eval_s']:>7.1f} {r['wall_s']:>7.1f} {r['steps']:>6}   {hit}   "
              f"{f.get('unseen_pair', float('nan')):.3f}/{f.get('seen_pair', float('nan')):.3f}/{f.get('single_object', float('nan')):.3f}",
              flush=True)
    print("steps/s: mean over steps 2..N (step 1 = setup + warm-up, shown as '1st step'); ms/step: median;")
    print("train s: all steps, evaluations excluded; wall s: everything inside train(), evaluations included.")
    if hasattr(os, "getloadavg"):
        print(f"load average at the end: {os.getloadavg()[0]:.1f} (1 min; > threads means shared cores, noisy times)")
    if "fast" in results and "full" in results:
        fast, full = results["fast"], results["full"]
        print()
        print(f"fast/full speed-up: steps/s {fast['steps_per_s'] / full['steps_per_s']:.2f}x,"
              f" median step {full['median_ms'] / fast['median_ms']:.2f}x")
        if fast["hit_train_s"] and full["hit_train_s"]:
            print(f"fast/full speed-up (train s to unseen_pair >= {args.target}): "
                  f"{full['hit_train_s'] / fast['hit_train_s']:.2f}x")


if __name__ == "__main__":
    sys.exit(run_script(main))
