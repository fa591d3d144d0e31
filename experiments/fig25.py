"""App. P, Fig. 25 (A14): all 14 head subsets of a generalizing 4-head model, unseen-pair
accuracy right after pruning and after continued training (same recipe, fresh AdamW), with each
original head's L/R bias (argmax proportions). Also Fig. 24 (single-head vision trained from
scratch) over a grid of weight decay x d_head.

    python experiments/fig25.py --quick                         # ~30 s
    python experiments/fig25.py                                 # full: default model + 14 x 300 continued steps (~8 min)
"""

from __future__ import annotations

import itertools

from worlds_common import reproduce_main, config, entry, pct

import circuits
from circuits.evaluation import evaluate
from circuits.prune import prune_and_retrain
from circuits.stats import head_bias

CONT_STEPS = 300  # CHOICE for the full profile (the spec's default, the original 1500, is ~5x longer)
FIG24_GRID = [(wd, dh) for wd in (0.0, 0.01, 0.1, 1.0) for dh in (32, 64, 128)]


def run(quick: bool, seeds: list[int]):
    rows = []
    for seed in seeds:
        base = circuits.train_model(config({}, quick, seed), progress=False)
        bias = head_bias(base.model, base.task.probe("unseen_pair"))
        lr = [a - b for a, b in zip(bias.argmax_first, bias.argmax_second)]
        rows.append({"seed": seed, "kind": "original", "keep": [0, 1, 2, 3], "after": evaluate(base.model, base.task)["unseen_pair"],
                     "lr_bias": lr})
        for k in (1, 2, 3):
            for keep in itertools.combinations(range(4), k):
                res = prune_and_retrain(base, keep, steps=20 if quick else CONT_STEPS)
                signs = {lr[h] > 0 for h in keep}
                rows.append({"seed": seed, "kind": "pruned", "keep": list(keep), "before": res.before["unseen_pair"],
                             "after": res.after["unseen_pair"], "both_signs": len(signs) == 2})
        for wd, dh in ([(0.0, 8), (1.0, 8)] if quick else FIG24_GRID):
            over = {"model.vision.n_heads": 1, "model.vision.d_head": dh, "train.weight_decay": wd}
            r = circuits.train_model(config(over, quick, seed), progress=False)
            rows.append({"seed": seed, "kind": "fig24", "weight_decay": wd, "d_head": dh, "after": evaluate(r.model, r.task)["unseen_pair"]})
    orig = rows[0]
    md = ["Original model: unseen-pair " + pct([orig["after"]]) + "; argmax L−R bias per head "
          + ", ".join(f"h{h} {b:+.2f}" for h, b in enumerate(orig["lr_bias"])), "",
          "| kept heads | kept biases both signs | unseen-pair after pruning | after continued training |", "|---|---|---|---|"]
    for r in rows:
        if r["kind"] == "pruned" and r["seed"] == 0:
            md.append(f"| {','.join(map(str, r['keep']))} | {r['both_signs']} | {pct([r['before']])} | {pct([r['after']])} |")
    md += ["", "Paper: multi-head subsets ≈ the original after continued training; single heads ≈ 0.5.", "",
           "Fig. 24, single-head vision from scratch (paper: unseen-pair \"around or below 0.5\" everywhere)", "",
           "| weight decay | d_head | unseen-pair |", "|---|---|---|"]
    md += [f"| {r['weight_decay']} | {r['d_head']} | {pct([r['after']])} |" for r in rows if r["kind"] == "fig24" and r["seed"] == 0]
    return rows, "\n".join(md)


EXPERIMENT = {"name": "fig25", "title": "App. P: single-head models (Fig. 24) and all 14 head subsets, pruned and retrained (Fig. 25)", "paper": "App. P, Figs. 24-25", "time": "~8 s / ~16 min"}


def main(argv: list[str] | None = None) -> int:
    return reproduce_main(EXPERIMENT["name"], run, argv)


if __name__ == "__main__":
    entry(main)
