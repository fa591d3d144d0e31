"""Reproduce the ablation table (Fig. 5e, Table 2) and head-bias statistics (Fig. 4c, 5d) over seeds.

For each variant (rows of `VARIANTS` below) and each seed, train the default 1-layer,
4-head attention-only CLIP pair, then zero-ablate the vision encoder's score terms EP, PP, BP,
the identifiable key-position combination EP+PP, EP+PP+BP, the positional value source VP
(App. I) and EP+PP+BP+VP, and measure the vision heads' left/right bias and relational share
(`circuits.stats.head_bias`) and each term's horizontal slope on the [CLS] row
(`circuits.stats.term_gradient`). Writes ``OUT/reproduction.json`` (every number) and a
markdown summary ``OUT/reproduction.md`` (quoted in docs/reproduction.md).

    python experiments/reproduce_ablation.py --jobs 2        # 5 seeds x (default, ep-dominant): 861 s on a busy 2-core machine
    python experiments/reproduce_ablation.py --quick         # 1 seed, 600 steps, -> runs/reproduce_ablation/quick (smoke test, ~1 min)
    python experiments/reproduce_ablation.py --seeds 1 --variants all --out experiments/results/sweep   # the init sweep
    python experiments/reproduce_ablation.py --list          # print the variant table

Why variants? On the [CLS] row the query is always E[CLS] + P[0]: the two vectors receive the
same gradient at every step, so how a learned key-position gradient is split between EP
(query E[CLS]) and PP (query P[0]) is set by their initial values and weight decay, not by the
data. Only EP+PP (with BP: every key-P term) is identifiable. Shrinking the positional init
relative to the token init makes E[CLS] the larger part of the [CLS] query, so EP carries
more of the gradient ("ep-dominant"); a token init much larger than the positional one makes
the label-specific EE term large and the model stops generalizing ("token1.0").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

import circuits
from circuits.ablate import Ablation, evaluate_ablation
from circuits.errors import CircuitsError
from circuits.runtime import DEFAULT_THREADS, run_script, set_threads
from circuits.stats import head_bias, term_gradient

ROOT = Path(__file__).resolve().parent.parent
QUICK_OUT = ROOT / "runs" / "reproduce_ablation" / "quick"  # untracked: a smoke test never touches results/


@dataclass(frozen=True)
class Variant:
    description: str
    overrides: tuple[str, ...] = ()


# name -> (description, config overrides). Vision-encoder init only unless stated; every
# other setting is the library default (RunConfig()), steps come from --steps.
VARIANTS: dict[str, Variant] = {
    "default": Variant("library defaults: token & pos init std 0.1"),
    "ep-dominant": Variant("vision pos init std 0.02 (token 0.1)", ("model.vision.init_pos_std=0.02",)),
    # --- candidates of the init sweep (docs/reproduction.md, "Choosing the variant") ---
    "pos0.01": Variant("vision pos init std 0.01 (token 0.1)", ("model.vision.init_pos_std=0.01",)),
    "pos0.01-wd0.03": Variant(
        "vision pos init std 0.01, weight decay 0.03", ("model.vision.init_pos_std=0.01", "train.weight_decay=0.03")
    ),
    "token0.3": Variant("vision token init std 0.3 (pos 0.1)", ("model.vision.init_embed_std=0.3",)),
    "token0.3-pos0.03": Variant(
        "vision token init std 0.3, pos 0.03", ("model.vision.init_embed_std=0.3", "model.vision.init_pos_std=0.03")
    ),
    "token0.2-pos0.02": Variant(
        "vision token init std 0.2, pos 0.02", ("model.vision.init_embed_std=0.2", "model.vision.init_pos_std=0.02")
    ),
    "token0.15-pos0.01": Variant(
        "vision token init std 0.15, pos 0.01", ("model.vision.init_embed_std=0.15", "model.vision.init_pos_std=0.01")
    ),
    "pos0.003": Variant("vision pos init std 0.003 (token 0.1)", ("model.vision.init_pos_std=0.003",)),
    "token0.5": Variant("vision token init std 0.5 (pos 0.1)", ("model.vision.init_embed_std=0.5",)),
    "token1.0": Variant(
        "token init std 1.0, vision and text (pos 0.1)", ("model.vision.init_embed_std=1.0", "model.text.init_embed_std=1.0")
    ),
}
DEFAULT_VARIANTS = ("default", "ep-dominant")

ABLATIONS = {
    "EP": Ablation(terms=("EP",)),
    "PP": Ablation(terms=("PP",)),
    "BP": Ablation(terms=("BP",)),
    "EP+PP": Ablation(terms=("EP", "PP")),
    "EP+PP+BP": Ablation(terms=("EP", "PP", "BP")),
    "VP": Ablation(values=("P",)),
    "EP+PP+BP+VP": Ablation(terms=("EP", "PP", "BP"), values=("P",)),
}
METRICS = ("single_object", "seen_pair", "unseen_pair", "label_set")
SLOPE_TERMS = ("EP", "PP", "BP", "EP+PP+BP")
# Paper Table 2 (App. M), left-only rows. The header of its second column was lost in the text
# extraction; it takes the values 20 and 25 (a world-size setting, probably the number of labels).
PAPER = {
    "baseline": "82% / 89%",
    "EP": "55% / 61%",
    "PP": "81% / 88%",
    "BP": "81% / 88%",
    "EP+PP": "-",
    "EP+PP+BP": "50% / 50%",
    "VP": "-",
    "EP+PP+BP+VP": "≈0.5 (App. I, Fig. 17a)",
}


def run_one(name: str, seed: int, steps: int, ckpt: str | None = None, threads: int = DEFAULT_THREADS) -> dict:
    set_threads(threads)  # in a worker process too: each pins its own count
    variant = VARIANTS[name]
    overrides = [*variant.overrides, f"train.seed={seed}", f"world.seed={seed}", f"train.steps={steps}",
                 f"train.eval_every={max(steps // 10, 1)}", f"train.threads={threads}"]
    cfg = circuits.RunConfig().with_overrides(overrides)
    result = circuits.train_model(cfg, progress=False)
    model, world = result.model, result.task
    if ckpt is not None:
        circuits.save(result, Path(ckpt), force=True)
    row: dict = {"variant": name, "seed": seed, "overrides": overrides, "train_seconds": round(result.seconds, 1),
                 "history_unseen_pair": [(h["step"], h["unseen_pair"]) for h in result.history],
                 "baseline": circuits.evaluate(model, world)}
    for abl_name, ablation in ABLATIONS.items():
        row[abl_name] = evaluate_ablation(model, world, ablation)["ablated"]
    bias = head_bias(model, world.probe())
    row["head_left"], row["head_right"], row["head_relational"] = bias.first, bias.second, bias.relational
    grad = term_gradient(model, world.probe(), terms=SLOPE_TERMS)
    row["slope"] = {t: g.slope for t, g in grad.items()}
    return row


# ---------------------------------------------------------------- summaries


def mean_std(values: list[float], pct: bool = False) -> str:
    f = (lambda v: f"{100 * v:.1f}") if pct else (lambda v: f"{v:.3f}")
    if len(values) == 1:
        return f(values[0])
    return f"{f(statistics.mean(values))} ± {f(statistics.stdev(values))}"


def most_biased(r: dict) -> int:
    return max(range(len(r["head_left"])), key=lambda h: abs(r["head_left"][h] - r["head_right"][h]))


def ep_share(r: dict) -> dict[str, float]:
    """|slope t| / sum over EP, PP, BP, at the head with the steepest EP+PP+BP slope."""
    h = max(range(len(r["head_left"])), key=lambda k: abs(r["slope"]["EP+PP+BP"][k]))
    total = sum(abs(r["slope"][t][h]) for t in ("EP", "PP", "BP"))
    return {t: abs(r["slope"][t][h]) / total for t in ("EP", "PP", "BP")}


def summarize(results: dict[str, list[dict]], steps: int, variants: dict[str, dict]) -> str:
    """Markdown tables; ``variants`` is the JSON's name -> {description, overrides}."""
    cols = ["baseline", *ABLATIONS]
    lines = [f"# Ablation reproduction ({steps} training steps)", ""]
    lines += ["Variants:", ""]
    for name in results:
        v = variants[name]
        lines.append(f"* `{name}`: {v['description']}; overrides `{' '.join(v['overrides']) or '(none)'}`")
    lines.append("")
    for metric in METRICS:
        lines += [f"## {metric} accuracy (%) after zero-ablation in the vision encoder, mean ± std over seeds", ""]
        lines.append("| variant | n | " + " | ".join(cols) + " |")
        lines.append("|---" * (len(cols) + 2) + "|")
        for name, rows in results.items():
            cells = [mean_std([r[c][metric] for r in rows], pct=True) for c in cols]
            lines.append(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |")
        if metric == "unseen_pair":
            lines.append("| paper Table 2, left-only (two settings) | | " + " | ".join(PAPER[c] for c in cols) + " |")
        lines.append("")

    lines += ["## Drop of unseen-pair accuracy (percentage points) under each ablation, mean ± std of per-seed drops", ""]
    lines.append("| variant | EP | PP | BP | EP+PP | EP+PP+BP |")
    lines.append("|---|---|---|---|---|---|")
    for name, rows in results.items():
        cells = [mean_std([r["baseline"]["unseen_pair"] - r[c]["unseen_pair"] for r in rows], pct=True)
                 for c in ("EP", "PP", "BP", "EP+PP", "EP+PP+BP")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")

    lines += ["## Vision heads on unseen-pair images (head_bias)", "",
              "P(left) / P(right): fraction of images whose [CLS] attends more to the left / right object; "
              "relational: fraction where the key-position part (EP+PP+BP) alone decides. "
              "'most biased' = head with the largest |P(left) - P(right)|.", ""]
    lines.append("| variant | seed | unseen-pair | most biased head | P(left) | P(right) | relational | all heads P(left) [relational] |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        for r in rows:
            h = most_biased(r)
            heads = ", ".join(f"h{k}: {r['head_left'][k]:.2f} [{r['head_relational'][k]:.2f}]" for k in range(len(r["head_left"])))
            lines.append(f"| {name} | {r['seed']} | {r['baseline']['unseen_pair']:.3f} | h{h} | {r['head_left'][h]:.2f} | "
                         f"{r['head_right'][h]:.2f} | {r['head_relational'][h]:.2f} | {heads} |")
    lines.append("")

    lines += ["## Share of the key-position slope on the [CLS] row", "",
              "|slope t| / (|slope EP| + |slope PP| + |slope BP|) at the head with the steepest EP+PP+BP slope "
              "(term_gradient), mean ± std over seeds.", ""]
    lines.append("| variant | EP share | PP share | BP share |")
    lines.append("|---|---|---|---|")
    for name, rows in results.items():
        shares = [ep_share(r) for r in rows]
        lines.append(f"| {name} | " + " | ".join(mean_std([s[t] for s in shares]) for t in ("EP", "PP", "BP")) + " |")
    lines.append("")
    secs = [r["train_seconds"] for rows in results.values() for r in rows]
    lines.append(f"Training time per model: {mean_std(secs)} s.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (default 5)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds are FIRST..FIRST+N-1 (default 0)")
    parser.add_argument("--steps", type=int, default=1500, help="training steps per model (default 1500)")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help=f"comma-separated names from VARIANTS, or 'all' (default {','.join(DEFAULT_VARIANTS)})")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default experiments/results, or runs/reproduce_ablation/quick with --quick)")
    parser.add_argument("--force", action="store_true", help="overwrite the results already in --out")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 1 seed, 600 steps, default variant only, OUT=runs/reproduce_ablation/quick")
    parser.add_argument("--jobs", type=int, default=1, help="models trained in parallel (default 1)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help=f"CPU threads of each model's training (default {DEFAULT_THREADS})")
    parser.add_argument("--save-checkpoints", action="store_true", help="also keep every trained model under OUT/ckpt")
    parser.add_argument("--from-json", type=Path, default=None, help="only rewrite the .md next to this reproduction.json")
    parser.add_argument("--list", action="store_true", help="print the variant table and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, v in VARIANTS.items():
            print(f"{name:18s} {v.description:50s} {' '.join(v.overrides)}")
        return
    if args.jobs < 1 or args.threads < 1 or args.seeds < 1 or args.steps < 1:
        parser.error("--jobs, --threads, --seeds and --steps must be >= 1")
    if args.from_json is not None:
        try:
            d = json.loads(args.from_json.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CircuitsError(f"cannot read --from-json {args.from_json}: {getattr(e, 'strerror', None) or e}") from None
        md = summarize(d["results"], d["steps"], d["variants"]) + f"Wall time: {d['wall_seconds']:.0f} s ({d['jobs']} job(s)).\n"
        if "note" in d:
            md += f"\nNote: {d['note']}\n"
        args.from_json.with_suffix(".md").write_text(md)
        print(md)
        return
    results_dir = Path(__file__).parent / "results"
    if args.quick:
        args.seeds, args.steps = 1, 600
        if args.variants == ",".join(DEFAULT_VARIANTS):
            args.variants = "default"
    out = args.out or (QUICK_OUT if args.quick else results_dir)
    names = list(VARIANTS) if args.variants == "all" else [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    if (out / "reproduction.json").exists() and not args.force:
        raise CircuitsError(f"{out} already holds results; pass --force to overwrite them or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CircuitsError(f"cannot create --out {out}: {e.strerror or e}") from None
    set_threads(args.threads)

    jobs = [(name, seed, args.steps, str(out / "ckpt" / f"{name}-seed{seed}") if args.save_checkpoints else None,
             args.threads)
            for name in names for seed in range(args.first_seed, args.first_seed + args.seeds)]
    start = time.perf_counter()
    results: dict[str, list[dict]] = {name: [] for name in names}

    def report(row: dict) -> None:
        results[row["variant"]].append(row)
        print(f"{row['variant']} seed {row['seed']} ({row['train_seconds']:.0f} s): unseen {row['baseline']['unseen_pair']:.3f}, "
              f"EP {row['EP']['unseen_pair']:.3f}, PP {row['PP']['unseen_pair']:.3f}, "
              f"EP+PP+BP {row['EP+PP+BP']['unseen_pair']:.3f}", flush=True)

    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            for row in pool.map(run_one, *zip(*jobs)):
                report(row)
    else:
        for job in jobs:
            report(run_one(*job))
    for rows in results.values():
        rows.sort(key=lambda r: r["seed"])
    wall = time.perf_counter() - start

    meta = {"command": " ".join(["python", "experiments/reproduce_ablation.py", *(argv if argv is not None else sys.argv[1:])]),
            "steps": args.steps, "seeds": list(range(args.first_seed, args.first_seed + args.seeds)), "jobs": args.jobs, "wall_seconds": round(wall, 1),
            "torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "variants": {n: {"description": VARIANTS[n].description, "overrides": list(VARIANTS[n].overrides)} for n in names},
            "paper_table2_left_only": PAPER}
    (out / "reproduction.json").write_text(json.dumps({**meta, "results": results}, indent=1))
    summary = summarize(results, args.steps, meta["variants"]) + f"Wall time: {wall:.0f} s ({args.jobs} job(s)).\n"
    (out / "reproduction.md").write_text(summary)
    print(summary)


if __name__ == "__main__":
    sys.exit(run_script(main))
