"""Model-steps per second of the sweep executors, all in one run, as ratios to sequential runs.

    PYTHONPATH=$PWD python benchmarks/bench_sweep.py                 # default model, 100 steps per run
    PYTHONPATH=$PWD python benchmarks/bench_sweep.py --steps 50 --ks 1,4,8 --no-ray

Measures on the same machine, one after the other: sequential single runs (one process, one
thread), ``local --jobs 2`` (worker processes, one thread each), ``--ensemble K`` (vectorised
members in one process) for each K, and Ray with 2 workers. Every configuration trains
``max(K)`` (or ``--runs``) default models; evaluations run at the end only. Prints a table;
nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from circuits.runtime import run_script
from circuits.sweep import SweepSpec, run_sweep


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "?"


def spec(runs: int, steps: int, device: str) -> SweepSpec:
    # seeds untied from the world so that every configuration can stack all of its runs
    return SweepSpec.from_dict({"seeds": runs, "tie_world_seed": False,
                                "set": {"train.steps": steps, "train.eval_every": steps, "train.device": device}})


def measure(name: str, runs: int, steps: int, device: str, **kwargs) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = run_sweep(spec(runs, steps, device), Path(tmp) / "out", progress=False, **kwargs)
        seconds = time.perf_counter() - start
    assert summary.ok, summary.failed
    rate = runs * steps / seconds
    print(f"{name:24s} {runs:3d} runs x {steps} steps in {seconds:7.1f} s: {rate:7.1f} model-steps/s", flush=True)
    return rate


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--runs", type=int, default=None, help="runs per configuration (default: the largest K)")
    p.add_argument("--ks", default="1,4,8,16,32", help="ensemble sizes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-ray", action="store_true")
    args = p.parse_args(argv)
    ks = [int(k) for k in args.ks.split(",")]
    runs = args.runs or max(ks)
    print(f"python {platform.python_version()}  cpus {os.cpu_count()}  {platform.machine()}  load avg {_load()}"
          f"  ({runs} runs of {args.steps} steps per executor)", flush=True)
    rates = {"sequential (1 process)": measure("sequential", runs, args.steps, args.device, jobs=1)}
    rates["local --jobs 2"] = measure("local --jobs 2", runs, args.steps, args.device, jobs=2)
    for k in ks:
        rates[f"--ensemble {k}"] = measure(f"--ensemble {k}", runs, args.steps, args.device, jobs=1, ensemble=k)
    if not args.no_ray:
        import ray

        # (workers import this tree's circuits, as the sweep's own Ray start arranges)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
        rates["ray, 2 CPUs"] = measure("ray, 2 CPUs", runs, args.steps, args.device, backend="ray")
        ray.shutdown()
    print(f"load avg at the end {_load()}")
    base = rates["sequential (1 process)"]
    print("\n| executor | model-steps/s | ratio to sequential |\n|---|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.1f} | {rate / base:.2f} |")


if __name__ == "__main__":
    sys.exit(run_script(main))
