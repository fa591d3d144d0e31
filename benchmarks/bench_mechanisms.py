"""Latency of the mechanism analyses on a trained checkpoint, in-process (imports and loading
excluded), one thread: `rotation_alignment` (200 permutations + the init null), `training_phases`,
`bias_checks` + `gradient_terms`, `text_attention_bias`, and `rope_analysis` when the vision
encoder is rotary.

    python benchmarks/bench_mechanisms.py runs/seed0 [runs/rotary0 ...]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import circuits
from circuits.align import initial_model, rotation_alignment
from circuits.phases import training_phases
from circuits.runtime import run_script, set_threads
from circuits.stat_checks import bias_checks, gradient_terms
from circuits.text_bias import text_attention_bias


def timed(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    set_threads(1)
    for path in map(Path, argv if argv is not None else sys.argv[1:]):
        start = time.perf_counter()
        run = circuits.load(path)
        load_s = time.perf_counter() - start
        task, model, probe = run.task, run.model, run.task.probe("unseen_pair")
        rows = {
            "load": load_s,
            "align": timed(lambda: rotation_alignment(model, task.train_labels, task.heldout_labels,
                                                      init_model=initial_model(run.cfg, task))),
            "phases": timed(lambda: training_phases(path)),
            "checks": timed(lambda: (bias_checks(model, probe), gradient_terms(model, probe))),
            "text-attention": timed(lambda: text_attention_bias(model, task.probe("unseen_pair", "text").tokens)),
        }
        if run.cfg.model.vision.positional == "rotary":
            from circuits.rope import rope_analysis

            rows["rope"] = timed(lambda: rope_analysis(model, probe))
        print(path.name, " ".join(f"{k} {v:.2f} s" for k, v in rows.items()))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
