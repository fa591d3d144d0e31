"""Torch threads under contention: 200 training steps of the default model with 1 and 2 threads,
on an idle machine and under a competing CPU load of 2 busy processes, all in one run.

Each measurement trains in a fresh subprocess (``RunConfig()`` with ``train.steps``,
``train.threads``, cpu) and reports the training seconds `circuits.train` logs (world and model
set-up excluded, its evaluations every 50 steps included). The load is ``--load`` Python
processes spinning on the CPU, started before and stopped after each loaded measurement.
Prints every time, then the ratios loaded / idle and 2 threads / 1 thread.

    python benchmarks/bench_threads.py                 # 200 steps, threads 1 and 2, load 2
    python benchmarks/bench_threads.py --steps 100 --threads 1,2,4 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import json, sys, time
from circuits.config import RunConfig
from circuits.train import train
cfg = RunConfig().with_overrides({"train.steps": %d, "train.threads": %d, "train.device": "cpu"})
t0 = time.perf_counter()
result = train(cfg, progress=False)
print(json.dumps({"train_s": result.seconds, "total_s": time.perf_counter() - t0}))
"""
SPIN = "while True: pass"


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def measure(steps: int, threads: int) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", CHILD % (steps, threads)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"the training subprocess failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])["train_s"]


def under_load(n: int, fn):
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(n)]
    try:
        time.sleep(0.5)  # let the spinners get going
        return fn()
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200, help="training steps per measurement (default 200)")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--load", type=int, default=2, help="busy processes of the competing load (default 2)")
    p.add_argument("--repeat", type=int, default=1, help="measurements per setting; the median is shown (default 1)")
    args = p.parse_args(argv)
    try:
        counts = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        fail(f"--threads {args.threads!r} must be comma-separated integers, e.g. 1,2")
    if not counts or min(counts) < 1 or args.steps < 1 or args.load < 0 or args.repeat < 1:
        fail("--threads must be >= 1, --steps >= 1, --load >= 0 and --repeat >= 1")

    print(f"python {platform.python_version()}  cpus {os.cpu_count()}  {platform.machine()}  "
          f"load avg before {os.getloadavg()[0]:.1f}  steps {args.steps}  repeat {args.repeat}", flush=True)
    times: dict[tuple[str, int], float] = {}
    for condition in ("idle", f"load {args.load}"):
        for n in counts:
            run = lambda: statistics.median(measure(args.steps, n) for _ in range(args.repeat))  # noqa: E731
            times[condition, n] = run() if condition == "idle" else under_load(args.load, run)
            print(f"{condition:<8} threads {n}: {times[condition, n]:6.1f} s", flush=True)
    loaded = f"load {args.load}"
    print()
    for n in counts:
        print(f"threads {n}: loaded / idle = {times[loaded, n] / times['idle', n]:.2f}")
    for n in counts[1:]:
        for condition in ("idle", loaded):
            print(f"{condition:<8} threads {n} / threads {counts[0]} = {times[condition, n] / times[condition, counts[0]]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
