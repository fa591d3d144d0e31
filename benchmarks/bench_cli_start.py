"""How fast lenscli answers when no work is to be done: help texts and bad input.

Each case runs ``python -m lenscli.app ...`` as a fresh process (interpreter start, imports,
argument and config checks, exit) ``--repeat`` times and prints the median and the worst wall
time, and the median CPU seconds (user + system) of the process, which a busy machine does not
inflate. Issue 14 asks for <= 1 s on an idle machine for every such answer.

    python benchmarks/bench_cli_start.py               # median of 5
    python benchmarks/bench_cli_start.py --repeat 11
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "lenscli --help": ["--help"],
    "lenscli train --help": ["train", "--help"],
    "bad flag (train --nope)": ["train", "--nope"],
    "bad --set key (train.nope=1)": ["train", "--set", "train.nope=1"],
    "bad --set value (train.steps=x)": ["train", "--set", "train.steps=x"],
    "missing --ckpt (eval)": ["eval", "--ckpt", "/nonexistent/run"],
    "absurd size (world.width=400)": ["train", "--set", "world.width=400"],
}


def wall(args: list[str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system: what a busy machine cannot inflate) and exit code."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    rc = subprocess.run([sys.executable, "-m", "lenscli.app", *args], env=env, capture_output=True).returncode
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), rc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5, help="runs per case; the median is reported (default 5)")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    print(f"python {platform.python_version()}  cpus {os.cpu_count()}  {platform.machine()}  "
          f"load avg {os.getloadavg()[0]:.1f}  repeat {args.repeat}")
    print(f"{'case':<34} {'exit':>4} {'median s':>9} {'max s':>7} {'median cpu s':>13}")
    for name, case in CASES.items():
        runs = [wall(case) for _ in range(args.repeat)]
        times, cpu = [t for t, _, _ in runs], [c for _, c, _ in runs]
        print(f"{name:<34} {runs[-1][2]:>4} {statistics.median(times):>9.2f} {max(times):>7.2f}"
              f" {statistics.median(cpu):>13.2f}", flush=True)
    print(f"load avg at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
