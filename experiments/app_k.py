"""App. K (A12): the 2D 4x4 grid. Paper: 100% single-object / 100% seen-pair / 98% unseen-pair,
"horizontal attention gradients". Reports the three accuracies and, per vision head, the 2D
gradient score of EP+PP (term ~ a*col + b*row + c on the CLS row) beside the head's L/R bias.

    python experiments/app_k.py --quick          # ~20 s
    python experiments/app_k.py --seeds 3        # full: default model on the 4x4 grid, ~1.5 min per seed
"""

from __future__ import annotations

from worlds_common import reproduce_main, config, entry, mean_std, pct

import circuits
from circuits.evaluation import evaluate
from circuits.stats import gradient_2d, head_bias

GRID = {"world.width": 4, "world.height": 4}


def run(quick: bool, seeds: list[int]):
    rows = []
    for seed in seeds:
        r = circuits.train_model(config(GRID, quick, seed), progress=False)
        m = evaluate(r.model, r.task)
        probe = r.task.probe("unseen_pair")
        g = gradient_2d(r.model, probe, terms=("EP", "PP", "BP", "EP+PP"))
        bias = head_bias(r.model, probe)
        heads = []
        for h in range(len(bias.first)):
            a, b = g["EP+PP"].col[h], g["EP+PP"].row[h]
            lr = bias.argmax_first[h] - bias.argmax_second[h]
            heads.append({"head": h, "a_col": a, "b_row": b, "r2": g["EP+PP"].r2[h], "lr_bias": lr,
                          "horizontal": abs(a) >= 3 * abs(b), "sign_matches": (a < 0) == (lr > 0)})
        rows.append({"seed": seed, **m, "gradient_2d": {k: vars(v) for k, v in g.items()}, "heads": heads,
                     "accept": any(x["horizontal"] and x["sign_matches"] for x in heads)})
    md = ["| | single-object | seen-pair | unseen-pair |", "|---|---|---|---|",
          "| paper (App. K) | 100% | 100% | 98% |",
          f"| ours | {pct([r['single_object'] for r in rows])} | {pct([r['seen_pair'] for r in rows])} |"
          f" {pct([r['unseen_pair'] for r in rows])} |", "",
          "EP+PP on the CLS row, per head (seed 0): slope per column a, per row b, R², argmax L−R bias",
          "", "| head | a (col) | b (row) | R² | L−R bias | abs(a) ≥ 3 abs(b) | sign(a) matches bias |", "|---|---|---|---|---|---|---|"]
    md += [f"| {x['head']} | {x['a_col']:+.3f} | {x['b_row']:+.3f} | {x['r2']:.2f} | {x['lr_bias']:+.2f} |"
           f" {x['horizontal']} | {x['sign_matches']} |" for x in rows[0]["heads"]]
    md.append(f"\nAcceptance (A12: some head horizontal with the sign of its bias): {mean_std([float(r['accept']) for r in rows])}")
    return rows, "\n".join(md)


EXPERIMENT = {"name": "app-k", "title": "App. K: the 2D 4x4 grid, accuracies and 2D gradient score of EP+PP", "paper": "App. K, Fig. 20", "time": "~5 s / ~5 min (3 seeds)"}


def main(argv: list[str] | None = None) -> int:
    return reproduce_main(EXPERIMENT["name"], run, argv)


if __name__ == "__main__":
    entry(main)
