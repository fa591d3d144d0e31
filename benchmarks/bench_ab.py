"""Training speed of this tree against another git revision, measured side by side in one run.

The revision's ``circuits`` package is exported (``git archive``) to a temporary directory and
imported under the name ``circuits_base`` next to this tree's ``circuits``, so both run in the
same process, interleaved round by round (each round: a few optimisation steps of each, then
one evaluation of each). On a shared machine the load changes from second to second; only
numbers measured this way (or alternately, as ``--full`` does) give honest ratios.

Prints, for each phase, the median CPU time (``time.thread_time``: what the step itself costs,
inflated by a busy machine but not by waiting for a core) and the median wall time, and the
base/new ratios:

* ``step``: one full optimisation step (forward, backward, AdamW);
* ``vision`` / ``text``: forward + backward of one encoder on the training batch;
* ``evaluate``: `circuits.evaluation.evaluate` on every split (what training runs every
  ``train.eval_every`` steps).

``--full N`` also trains the whole recipe N times with each tree, alternately, each in a fresh
subprocess, and prints wall seconds, CPU seconds, the step and wall seconds at which
unseen-pair accuracy first reached 0.9, and the final accuracies.

    python benchmarks/bench_ab.py                                   # this tree vs main, default model
    python benchmarks/bench_ab.py --base HEAD~3 --rounds 30
    python benchmarks/bench_ab.py --set model.vision.n_layers=2 --set model.text.n_layers=2
    python benchmarks/bench_ab.py --full 2                          # + 2 whole trainings each (~1 min each)
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import platform
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# one whole training in a subprocess; prints a JSON line (run with PYTHONPATH=<tree>)
FULL_RUN = """
import json, resource, sys, time
from {pkg}.config import RunConfig
from {pkg}.train import train
cfg = RunConfig().with_overrides(["train.device=cpu", *json.loads(sys.argv[1])])
hit = []
start = time.perf_counter()
run = train(cfg, progress=False, on_eval=lambda row: hit.append(row) if row["unseen_pair"] >= 0.9 and not hit else None)
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_SELF)
last = run.history[-1]
print(json.dumps({{"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "hit_step": hit[0]["step"] if hit else None,
                   "hit_s": hit[0]["seconds"] if hit else None,
                   "final": {{k: last[k] for k in ("unseen_pair", "seen_pair", "single_object")}}}}))
"""


def export_base(rev: str, into: Path) -> None:
    """``circuits`` at ``rev`` as package ``circuits_base`` under ``into`` (imports rewritten)."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "circuits"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    (into / "circuits").rename(into / "circuits_base")
    for path in (into / "circuits_base").rglob("*.py"):
        text = path.read_text()
        text = re.sub(r"\bcircuits\.", "circuits_base.", text)
        text = re.sub(r"\bfrom circuits import\b", "from circuits_base import", text)
        text = re.sub(r"^import circuits$", "import circuits_base", text, flags=re.MULTILINE)
        path.write_text(text)


def phases(pkg: str, overrides: list[str], steps_warmup: int = 3) -> dict:
    """Closures running each measured phase for package ``pkg`` (``circuits`` or ``circuits_base``)."""
    import torch

    config = importlib.import_module(f"{pkg}.config")
    models = importlib.import_module(f"{pkg}.models")
    tasks = importlib.import_module(f"{pkg}.tasks")
    loop = importlib.import_module(f"{pkg}.train.loop")
    objective = importlib.import_module(f"{pkg}.train.objective")
    evaluation = importlib.import_module(f"{pkg}.evaluation")
    cfg = config.RunConfig().with_overrides(["train.device=cpu", *overrides])
    world = tasks.build_task(cfg)
    model = models.build_model(cfg, world)
    obj, data, _ = loop.training_setup(cfg, world, torch.device("cpu"))
    optimizer = loop.make_optimizer(model, cfg.train)
    loss_fn = objective.loss_function(obj)
    for _ in range(steps_warmup):
        loop.optimizer_step(model, loss_fn, data, optimizer)
    img = model.encode_image(data.images, pooled_only=True).detach()
    txt = model.encode_text(data.captions, pooled_only=True).detach()
    return {
        "step": lambda: loop.optimizer_step(model, loss_fn, data, optimizer),
        "vision": lambda: model.encode_image(data.images, pooled_only=True).backward(img),
        "text": lambda: model.encode_text(data.captions, pooled_only=True).backward(txt),
        "evaluate": lambda: evaluation.evaluate(model, world, world.split_names),
    }


def median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "?"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default="main", help="git revision to compare against (default main)")
    p.add_argument("--rounds", type=int, default=20, help="interleaved rounds (default 20)")
    p.add_argument("--steps", type=int, default=5, help="steps of each tree per round (default 5)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for both trees, e.g. --set model.vision.n_layers=2 (repeatable)")
    p.add_argument("--full", type=int, default=0, metavar="N", help="also train the whole recipe N times with each tree")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        export_base(args.base, Path(tmp))
        sys.path[:0] = [str(ROOT), tmp]  # this tree's circuits first (not an installed copy elsewhere)
        print(f"torch {torch.__version__}  python {platform.python_version()}  threads 1  cpus {os.cpu_count()}"
              f"  {platform.machine()}  load avg {load()}")
        trees = {"base": phases("circuits_base", args.overrides), "new": phases("circuits", args.overrides)}
        new_path = Path(importlib.import_module("circuits").__file__).parent.parent
        print(f"base: {args.base}   new: {new_path}   overrides: {args.overrides or 'none'}")
        cpu: dict = {}
        wall: dict = {}
        for r in range(args.rounds):
            for tree, fs in trees.items():
                for name, f in fs.items():
                    for _ in range(1 if name == "evaluate" else args.steps):
                        w, c = time.perf_counter(), time.thread_time()
                        f()
                        cpu.setdefault((name, tree), []).append(time.thread_time() - c)
                        wall.setdefault((name, tree), []).append(time.perf_counter() - w)
        print(f"\n{args.rounds} interleaved rounds; medians in ms; load avg at the end {load()}")
        print(f"{'phase':<9} {'base cpu':>9} {'new cpu':>9} {'ratio':>6}   {'base wall':>9} {'new wall':>9} {'ratio':>6}")
        for name in trees["new"]:
            bc, nc = 1000 * median(cpu[(name, "base")]), 1000 * median(cpu[(name, "new")])
            bw, nw = 1000 * median(wall[(name, "base")]), 1000 * median(wall[(name, "new")])
            print(f"{name:<9} {bc:>9.2f} {nc:>9.2f} {bc / nc:>5.2f}x   {bw:>9.2f} {nw:>9.2f} {bw / nw:>5.2f}x")

        if args.full:
            print(f"\nwhole recipe, {args.full} run(s) per tree, alternately, each in a fresh process:")
            print(f"{'tree':<5} {'load':>5} {'wall s':>7} {'cpu s':>7} {'0.9 at step':>11} {'0.9 at s':>8}   final unseen/seen/single")
            totals: dict = {"base": [], "new": []}
            for _ in range(args.full):
                for tree, pkg, path in (("base", "circuits_base", tmp), ("new", "circuits", str(ROOT))):
                    before = load()
                    out = subprocess.run([sys.executable, "-c", FULL_RUN.format(pkg=pkg), json.dumps(args.overrides)],
                                         env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True, check=True)
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    totals[tree].append(r)
                    f = r["final"]
                    print(f"{tree:<5} {before:>5} {r['wall']:>7.1f} {r['cpu']:>7.1f} {str(r['hit_step']):>11} "
                          f"{(r['hit_s'] or float('nan')):>8.1f}   {f['unseen_pair']:.3f}/{f['seen_pair']:.3f}/{f['single_object']:.3f}",
                          flush=True)
            for key in ("wall", "cpu"):
                b, n = median([r[key] for r in totals["base"]]), median([r[key] for r in totals["new"]])
                print(f"{key} base/new: {b / n:.2f}x")
            print(f"load avg at the end {load()}")


if __name__ == "__main__":
    main()
