"""B2(c) / B11 (EXTENSION: [B] v2's code, not in v1's text): the RoPE sensitivity probe and
Cross-Modality Balance against the vision norm. Trains the App. O prefix-LM with a rotary decoder
(``model.decoder.positional="rotary"``, no decoder norm) at vision_scale c ∈ {0.1, 1, 10, 100}
per seed and reports, on the teacher-forced unseen-pair captions at the [BOS] row (which predicts
the first caption token), per layer and head: α_V, α_V(1 − α_V), Δα_V and Δg_V after shifting
only the vision keys by one RoPE position (`circuits.spatial.rope_probe`); the accuracies; and
the CMB vision share of every text row per layer (`circuits.spatial.balance`). [B]'s B2 argument
predicts that as c grows α_V(1 − α_V), |Δα_V| and relational accuracy fall.

    python experiments/rope_probe.py --quick     # ~2 s (tiny world and decoder, 20 steps, c in {0.1, 1, 10, 100})
    python experiments/rope_probe.py --seeds 3   # full: 4 models per seed; 394 s for 3 seeds at load ~3

Estimate (one-thread runs of the full-size rotary model on the loaded 2-core machine): training
took 6.1 s for 10 steps and 8.9 s for 100 (~0.03 s a step plus ~6 s of set-up and evaluation),
the probe + CMB + accuracies 4 s, so ~22 s per 400-step model and ~4.5 min for the 12 models of
3 seeds; allow more on a busier machine.
"""

from __future__ import annotations

import statistics

from vlm_common import num, pct, vlm_config
from worlds_common import entry, reproduce_main

from circuits.spatial.rope_probe import rope_sweep
from circuits.spatial.sweep import SCALES

ROTARY = {"model.decoder.positional": "rotary"}


def run(quick: bool, seeds: list[int]):
    rows = rope_sweep(vlm_config(ROTARY, quick), SCALES, tuple(seeds))
    return rows, markdown(rows, SCALES)


def _mean_abs(matrix: list[list[float]]) -> float:
    return statistics.mean(abs(v) for row in matrix for v in row)


def _mean(matrix: list[list[float]]) -> float:
    return statistics.mean(v for row in matrix for v in row)


def markdown(rows: list[dict], scales: tuple[float, ...]) -> str:
    n_layers, n_heads = len(rows[0]["delta_g_v"]), len(rows[0]["delta_g_v"][0])
    at = {c: [r for r in rows if r["vision_scale"] == c] for c in scales}
    md = ["Paper: no number to compare with. The RoPE sensitivity probe and Cross-Modality Balance are **extensions**"
          " (spec B11: tools of [B] v2's code, `_compute_uniform_delta_probe`); [B] v1 gives no number for them, so every"
          " number below is **ours**. [B]'s B2 argument (Sec. 4.2, App. A) predicts that as the vision norm c grows,"
          " α_V(1 − α_V), the positional sensitivity (|Δα_V|) and relational accuracy fall, single-object accuracy does not.",
          "", f"Rotary decoder, [BOS] row (predicts the first caption token), unseen-pair captions, shift Δ = {rows[0]['delta']}"
          " position of the vision keys only. Means over layers and heads (|Δα_V|, |Δg_V|: of each head's mean over images):", "",
          "| c | single-object | seen-pair | unseen-pair | α_V | α_V(1−α_V) | Δα_V | abs Δα_V | Δg_V | abs Δg_V | CMB share_V |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c, rs in at.items():
        md.append(f"| {c:g} | {pct([r['single_object'] for r in rs])} | {pct([r['seen_pair'] for r in rs])} |"
                  f" {pct([r['unseen_pair'] for r in rs])} | {num([_mean(r['alpha_v']) for r in rs])} |"
                  f" {num([_mean(r['alpha_v_sensitivity']) for r in rs])} | {num([_mean(r['delta_alpha_v']) for r in rs], '{:+.4f}')} |"
                  f" {num([_mean_abs(r['delta_alpha_v']) for r in rs], '{:.4f}')} | {num([_mean(r['delta_g_v']) for r in rs], '{:+.4f}')} |"
                  f" {num([_mean_abs(r['delta_g_v']) for r in rs], '{:.4f}')} | {num([r['cmb_share_v'] for r in rs])} |")
    for key, label, fmt in (("delta_g_v", "Δg_V", "{:+.4f}"), ("delta_alpha_v", "Δα_V", "{:+.4f}"), ("alpha_v", "α_V", "{:.3f}")):
        md += ["", f"{label} per layer and head against c (ours):", "",
               "| layer.head | " + " | ".join(f"c = {c:g}" for c in scales) + " |", "|---|" + "---|" * len(scales)]
        for l in range(n_layers):
            for h in range(n_heads):
                md.append(f"| {l}.{h} | " + " | ".join(num([r[key][l][h] for r in rs], fmt) for rs in at.values()) + " |")
    md += ["", "CMB vision share per layer (B9-aggregated rows of the text queries [BOS] w1 w2 w3, sink = [BOS]; ours):", "",
           "| layer | " + " | ".join(f"c = {c:g}" for c in scales) + " |", "|---|" + "---|" * len(scales)]
    for l in range(n_layers):
        md.append(f"| {l} | " + " | ".join(num([r["cmb_share_v_per_layer"][l] for r in rs]) for rs in at.values()) + " |")
    lo, hi = scales.index(1.0), len(scales) - 1
    sens = [statistics.mean(_mean(r["alpha_v_sensitivity"]) for r in at[scales[i]]) for i in (lo, hi)]
    moved = [statistics.mean(_mean_abs(r["delta_alpha_v"]) for r in at[scales[i]]) for i in (lo, hi)]
    seen = [statistics.mean(r["seen_pair"] for r in at[scales[i]]) for i in (lo, hi)]
    md += ["", f"From c = 1 to c = {scales[-1]:g}: α_V(1 − α_V) {'falls' if sens[1] < sens[0] else 'does not fall'}"
           f" ({sens[0]:.3f} → {sens[1]:.3f}), |Δα_V| {'falls' if moved[1] < moved[0] else 'does not fall'}"
           f" ({moved[0]:.4f} → {moved[1]:.4f}), seen-pair accuracy {100 * seen[0]:.0f} → {100 * seen[1]:.0f} %."]
    return "\n".join(md)


EXPERIMENT = {"name": "rope-probe", "title": "B11 (extension): RoPE sensitivity probe and Cross-Modality Balance against c, rotary decoder",
              "paper": "[B] v2 code (extension; B2(c), B11)", "time": "~2 s / ~7 min (3 seeds, 2-core machine at load ~3)"}


def main(argv: list[str] | None = None) -> int:
    return reproduce_main(EXPERIMENT["name"], run, argv)


if __name__ == "__main__":
    entry(main)
