"""Table 4's joint model over training: is it under-trained? (a controlled run for docs/reproduction.md)

Trains `table4.JOINT` (3-object world, false-negative masking, 2-layer vision + 2-layer text) for
``--steps`` steps with an evaluation every ``--eval-every``, one process per seed, and writes each
seed's metrics history as ``OUT/joint-s<seed>.jsonl`` (the rows `circuits.train_model` logs: every
split, the 3-object metrics of training and held-out triples included).

    python experiments/table4_curve.py --seeds 3 --steps 3000 --device cuda   # ~150 s per seed on an H200

The committed histories (experiments/results/table4/steps) were cut at step 2,750 by the device
session's time limit.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import table4
import worlds_common
from worlds_common import entry

import circuits

OUT = worlds_common.ROOT / "experiments" / "results" / "table4" / "steps"


def train_one(seed: int, steps: int, eval_every: int, device: str, out: Path) -> Path:
    worlds_common.set_device(device)
    cfg = worlds_common.config({**table4.JOINT, "train.steps": steps, "train.eval_every": eval_every}, False, seed)
    path = out / f"joint-s{seed}.jsonl"
    circuits.train_model(cfg, progress=False, metrics_path=path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--force", action="store_true", help="replace histories already in OUT")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in range(args.seeds):
        path = args.out / f"joint-s{seed}.jsonl"
        if path.exists():
            if not args.force:
                raise worlds_common.CircuitsError(f"{path} exists; pass --force to replace it or choose another --out")
            path.unlink()
    with ProcessPoolExecutor(args.seeds) as pool:
        for path in pool.map(train_one, range(args.seeds), [args.steps] * args.seeds, [args.eval_every] * args.seeds,
                             [args.device] * args.seeds, [args.out] * args.seeds):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    entry(main)
