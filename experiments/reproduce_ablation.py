"""Reproduce the ablation table (Fig. 5e, Table 2) and head-bias statistics (Fig. 4c, 5d) over seeds.

For each variant (the default recipe and a larger-token-init one) and each seed, train the
default 1-layer model, then zero-ablate EP, PP, BP, the identifiable key-position combination
EP+PP, EP+PP+BP, and the positional value source VP (App. I), and measure the vision heads'
left/right bias and relational share. Writes ``results/reproduction.json`` and a markdown
summary ``results/reproduction.md`` (copied into docs/reproduction.md).

    python experiments/reproduce_ablation.py               # 5 seeds x 2 variants, ~10 min on 2 CPU cores
    python experiments/reproduce_ablation.py --seeds 2 --steps 600   # quicker look
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import circuits
from circuits.ablate import Ablation, evaluate_ablation
from circuits.stats import head_bias, term_gradient

VARIANTS = {
    "default (token & pos init std 0.1)": [],
    "large token init (token std 1.0, pos std 0.1)": ["model.vision.init_embed_std=1.0", "model.text.init_embed_std=1.0"],
}
ABLATIONS = {
    "EP": Ablation(terms=("EP",)),
    "PP": Ablation(terms=("PP",)),
    "BP": Ablation(terms=("BP",)),
    "EP+PP": Ablation(terms=("EP", "PP")),
    "EP+PP+BP": Ablation(terms=("EP", "PP", "BP")),
    "VP": Ablation(values=("P",)),
    "EP+PP+BP+VP": Ablation(terms=("EP", "PP", "BP"), values=("P",)),
}
METRICS = ("unseen_pair", "label_set", "single_object", "seen_pair")
PAPER = {  # Table 2, left-only rows (two settings of the lost x-axis value), Fig. 5e
    "baseline": "82% / 89%",
    "EP": "55% / 61%",
    "PP": "81% / 88%",
    "BP": "81% / 88%",
    "EP+PP+BP": "50% / 50%",
    "VP": "n/a (App. I: all position terms incl. VP -> 0.5)",
}


def run_one(overrides: list[str], seed: int, steps: int, out_dir: Path | None) -> dict:
    cfg = circuits.RunConfig().with_overrides([*overrides, f"train.seed={seed}", f"world.seed={seed}", f"train.steps={steps}"])
    result = circuits.train(cfg, progress=False)
    model = result.model
    if out_dir is not None:
        circuits.save(model, out_dir, result.history, force=True)
    row: dict = {"seed": seed, "train_seconds": result.seconds, "baseline": circuits.evaluate(model)}
    for name, ablation in ABLATIONS.items():
        row[name] = evaluate_ablation(model, ablation)["ablated"]
    bias = head_bias(model)
    row["head_right"] = bias.second
    row["head_relational"] = bias.relational
    grad = term_gradient(model, terms=("EP", "PP", "BP", "EP+PP+BP"))
    row["slope"] = {name: g.slope for name, g in grad.items()}
    return row


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def summarize(results: dict[str, list[dict]]) -> str:
    lines = ["## Ablation: unseen-pair accuracy (label-set recognition) after zeroing terms, mean ± std over seeds", ""]
    cols = ["baseline", *ABLATIONS]
    lines.append("| variant | " + " | ".join(cols) + " |")
    lines.append("|---" * (len(cols) + 1) + "|")
    for variant, rows in results.items():
        cells = [f"{mean_std([r[c]['unseen_pair'] for r in rows])} ({mean_std([r[c]['label_set'] for r in rows])})" for c in cols]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines.append("| paper, Table 2 left-only | " + " | ".join(PAPER.get(c, "") for c in cols) + " |")
    lines += ["", "Single-object accuracy under EP+PP+BP: " + ", ".join(
        f"{v}: {mean_std([r['EP+PP+BP']['single_object'] for r in rows])}" for v, rows in results.items()), ""]

    lines += ["## Vision heads: fraction of unseen-pair images whose [CLS] attends more to the right object", "",
              "Heads sorted from most left- to most right-biased in each seed; relational share in brackets.", ""]
    for variant, rows in results.items():
        lines.append(f"**{variant}**")
        lines.append("")
        lines.append("| seed | unseen-pair | heads: P(right) [P(relational)] |")
        lines.append("|---|---|---|")
        for r in rows:
            order = sorted(range(len(r["head_right"])), key=lambda h: r["head_right"][h])
            heads = ", ".join(f"h{h}: {r['head_right'][h]:.2f} [{r['head_relational'][h]:.2f}]" for h in order)
            lines.append(f"| {r['seed']} | {r['baseline']['unseen_pair']:.2f} | {heads} |")
        lines.append("")

    lines += ["## Share of the key-position gradient carried by EP", "",
              "Per head: |slope of EP| / (|slope EP| + |slope PP| + |slope BP|) along the [CLS] row, "
              "for the head with the steepest EP+PP+BP gradient, mean ± std over seeds.", ""]
    lines.append("| variant | EP share | PP share | BP share |")
    lines.append("|---|---|---|---|")
    for variant, rows in results.items():
        shares = {t: [] for t in ("EP", "PP", "BP")}
        for r in rows:
            h = max(range(len(r["head_right"])), key=lambda k: abs(r["slope"]["EP+PP+BP"][k]))
            total = sum(abs(r["slope"][t][h]) for t in shares)
            for t in shares:
                shares[t].append(abs(r["slope"][t][h]) / total)
        lines.append(f"| {variant} | " + " | ".join(mean_std(shares[t]) for t in shares) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--save-checkpoints", action="store_true", help="also keep every trained model under OUT/ckpt")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    results: dict[str, list[dict]] = {}
    for v_index, (variant, overrides) in enumerate(VARIANTS.items()):
        results[variant] = []
        for seed in range(args.seeds):
            ckpt = args.out / "ckpt" / f"variant{v_index}-seed{seed}" if args.save_checkpoints else None
            row = run_one(overrides, seed, args.steps, ckpt)
            results[variant].append(row)
            print(f"{variant} seed {seed}: baseline {row['baseline']['unseen_pair']:.3f}, "
                  f"EP {row['EP']['unseen_pair']:.3f}, EP+PP+BP {row['EP+PP+BP']['unseen_pair']:.3f}", flush=True)

    (args.out / "reproduction.json").write_text(json.dumps({"steps": args.steps, "results": results}, indent=1))
    summary = summarize(results)
    (args.out / "reproduction.md").write_text(summary)
    print(summary)


if __name__ == "__main__":
    main()
