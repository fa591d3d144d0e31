"""Time to train the App. O prefix-LM vs the CLIP default, in the same process (spec A13 speed target).

    PYTHONPATH=$PWD python benchmarks/bench_vlm.py [--steps-vlm 400] [--batch-vlm 128]

Prints seconds for each and the ratio; the prefix-LM runs minibatches (``train.batch_size``).
"""

from __future__ import annotations

import argparse
import time

import circuits
from circuits.config import RunConfig
from circuits.runtime import set_threads


def timed(cfg: RunConfig) -> tuple[float, dict]:
    start = time.perf_counter()
    run = circuits.train_model(cfg, progress=False)
    return time.perf_counter() - start, run.history[-1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps-vlm", type=int, default=400)
    ap.add_argument("--batch-vlm", type=int, default=128)
    ap.add_argument("--steps-clip", type=int, default=1500)
    args = ap.parse_args()
    set_threads(1)
    vlm = RunConfig().with_overrides({"model.kind": "prefix_lm", "train.steps": args.steps_vlm,
                                      "train.batch_size": args.batch_vlm, "train.eval_every": args.steps_vlm})
    clip = RunConfig().with_overrides({"train.steps": args.steps_clip, "train.eval_every": args.steps_clip})
    t_vlm, m_vlm = timed(vlm)
    t_clip, m_clip = timed(clip)
    print(f"prefix_lm: {t_vlm:.1f} s  {m_vlm}")
    print(f"clip:      {t_clip:.1f} s  {m_clip}")
    print(f"ratio prefix_lm / clip: {t_vlm / t_clip:.2f}")


if __name__ == "__main__":
    main()
