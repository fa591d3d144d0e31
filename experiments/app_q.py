"""App. Q (A15): 2-layer attention-only vision encoder, 1-layer text. Paper: 1.0 / 1.0 / 0.86,
"horizontal attention gradients in the contributing terms of the first layer". Reports the
accuracies and the monotonicity and slope of EP, PP, BP and EP+PP on the CLS row of layer 0.

    python experiments/app_q.py --quick        # ~20 s
    python experiments/app_q.py --seeds 3      # full: ~3.5 min per seed on a loaded 2-core machine
"""

from __future__ import annotations

from worlds_common import reproduce_main, config, entry, mean_std, pct

import circuits
from circuits.evaluation import evaluate
from circuits.stats import term_gradient

TERMS = ("EP", "PP", "BP", "EP+PP")


def run(quick: bool, seeds: list[int]):
    rows = []
    for seed in seeds:
        r = circuits.train_model(config({"model.vision.n_layers": 2}, quick, seed), progress=False)
        g = term_gradient(r.model, r.task.probe("unseen_pair"), layer=0, terms=TERMS)
        rows.append({"seed": seed, **evaluate(r.model, r.task),
                     "layer0": {t: {"monotonicity": g[t].monotonicity, "slope": g[t].slope} for t in TERMS}})
    md = ["| | single-object | seen-pair | unseen-pair |", "|---|---|---|---|", "| paper (App. Q) | 100% | 100% | 86% |",
          f"| ours | {pct([r['single_object'] for r in rows])} | {pct([r['seen_pair'] for r in rows])} | {pct([r['unseen_pair'] for r in rows])} |",
          "", "Layer 0, CLS row: max over heads of |Spearman(term, column)|, mean ± std over seeds", "",
          "| term | max abs monotonicity |", "|---|---|"]
    md += [f"| {t} | {mean_std([max(abs(x) for x in r['layer0'][t]['monotonicity']) for r in rows])} |" for t in TERMS]
    return rows, "\n".join(md)


EXPERIMENT = {"name": "app-q", "title": "App. Q: 2-layer vision encoder, accuracies and layer-0 term gradients", "paper": "App. Q", "time": "~6 s / ~11 min (3 seeds, 2-core machine at load ~3)"}


def main(argv: list[str] | None = None) -> int:
    return reproduce_main(EXPERIMENT["name"], run, argv)


if __name__ == "__main__":
    entry(main)
