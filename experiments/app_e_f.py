"""Sec. 4-5, App. E, F (A5, A17): do the head statistics agree with each other?

Per vision head, on the unseen-pair images (`circuits.stat_checks.bias_checks`): the argmax
left/right difference |P_left − P_right| (Fig. 4c) beside the relational fraction (Fig. 5d) and
their gap; whether the sign of the EP slope along the [CLS] row is that of P_right − P_left
(App. F); and every layer-0 term's share of the row's spread (App. E, `circuits.stats.term_spread`;
the paper's percentages were lost in extraction, so there is nothing to compare them with).
Default models at every seed, and the LayerNorm + MLP models of app-r (shared through the cache).

    lenscli reproduce app-e-f --quick      # ~1 s
    lenscli reproduce app-e-f --seeds 3    # full: 3 default + 3 LN+MLP models (trained once, cached)
"""

from __future__ import annotations

from mechanisms_common import entry, f, fraction, heads, mean_std, reproduce_main, trained

from circuits.stat_checks import bias_checks
from circuits.stats import term_spread

KINDS = {"default": "simplified", "full": "LN + MLP (Fig. 3)"}
PAPER = ('Sec. 5: "the difference in the probability of attending to the left versus right object is approximately equal '
         'to the probability that each head attends to the two objects in a relational manner"; App. F: monotonic EP patterns '
         'in all four heads, "consistent with the bias in Fig. 4(c)"; App. E: "The average standard deviation of the '
         '[XW_QKXᵀ] term accounts for [lost]%, [lost]%, [lost]%, and [lost]% of the total standard deviation … for the four heads"')


def run(quick: bool, seeds: list[int]):
    rows = []
    for kind in KINDS:
        for seed in seeds:
            r = trained(kind, quick, seed)
            probe = r.task.probe("unseen_pair")
            checks = bias_checks(r.model, probe)
            gaps = [abs(h["gap"]) for h in checks if h["gap"] is not None]
            signs = [h["ep_sign_matches_bias"] for h in checks if h["ep_sign_matches_bias"] is not None]
            rows.append({"kind": kind, "seed": seed, "unseen_pair": r.final.get("unseen_pair"), "heads": checks,
                         "max_abs_gap": max(gaps) if gaps else None, "ep_sign_matches": signs,
                         "spread": term_spread(r.model, probe)})
    md = [f"Paper: {PAPER}.", "",
          "| model | seed | unseen-pair | per head: \\|P_L − P_R\\| / relational | max \\|gap\\| | EP slope per head | EP sign = sign(P_R − P_L) |",
          "|---|---|---|---|---|---|---|"]
    md += [f"| {KINDS[x['kind']]} | {x['seed']} | {f(x['unseen_pair'])} | "
           + " · ".join(f"{f(h['argmax_difference'])}/{f(h['relational'])}" for h in x["heads"])
           + f" | {f(x['max_abs_gap'])} | {heads([h['ep_slope'] for h in x['heads']], 3)} | {fraction(x['ep_sign_matches'])} |"
           for x in rows]
    md += ["", "App. E: each term's standard deviation along the [CLS] row over that of the full scores, per head "
               "(mean over the unseen-pair images), seed 0 of each model. The paper's numbers are lost: no reference.", ""]
    for kind, name in KINDS.items():
        x = next(y for y in rows if y["kind"] == kind)
        md += [f"{name}:", "", "| term | " + " | ".join(f"H{h}" for h in range(len(x["heads"]))) + " |",
               "|---|" + "---|" * len(x["heads"])]
        md += [f"| {t} | " + " | ".join(f(v) for v in x["spread"][t]) + " |" for t in x["spread"]]
        md.append("")
    for kind, name in KINDS.items():
        sub = [x for x in rows if x["kind"] == kind]
        signs = [s for x in sub for s in x["ep_sign_matches"]]
        md.append(f"Agreement, {name}: max |(|P_L − P_R|) − relational| over heads {mean_std([x['max_abs_gap'] for x in sub])} "
                  f"(mean ± std over seeds; the paper: ≈ 0); EP slope sign = bias sign in {fraction(signs)} heads.")
    return rows, "\n".join(md)


EXPERIMENT = {"name": "app-e-f", "title": "Sec. 4-5, App. E, F: |P_left - P_right| vs relational, EP slope sign vs bias, term spread",
              "paper": "Sec. 4-5 (Fig. 4c vs 5d), App. E, App. F", "time": "~1 s / 6 s cached (training its 6 models: ~56 min)"}


def main(argv: list[str] | None = None) -> int:
    return reproduce_main(EXPERIMENT["name"], run, argv)


if __name__ == "__main__":
    entry(main)
