"""App. R, Fig. 27 (A16): the LayerNorm terms of the multi-layer LN + MLP model of Fig. 3.

With pre-LayerNorm, layer 0's input splits exactly into Ê = γ⊙(e − μ(e))/σ(x), P̂ = γ⊙(p − μ(p))/σ(x)
and β (Eqs. 32-35), so the [CLS] score is a sum of the 9 terms ÊÊ … ββ (toolkit sources E, P, N = β)
plus the Q/K-bias terms (source B): 16 terms. For each, on the [CLS] row of layer 0 over the
pixel keys of the unseen-pair images (`circuits.stat_checks.gradient_terms`): the monotonicity
(Spearman against the column), the least-squares slope and the share of the row's spread, per
head; which terms carry a gradient (|ρ| ≥ 0.8 in some head, CHOICE) and whether those are exactly
the key-position terms (key source P̂). The model: fig3.toml's full model (2 layers, pre-LN, GELU
MLP 512, dropout 0.1) on the default world, minibatches of 256 (CHOICE, see mechanisms_common).

    lenscli reproduce app-r --quick        # ~2 s
    lenscli reproduce app-r --seeds 3      # full: 3 LN+MLP models (~10 min each on a busy 2-core machine; cached)
"""

from __future__ import annotations

from mechanisms_common import entry, f, fraction, mean_std, reproduce_main, trained

from circuits.stat_checks import gradient_terms

NAMES = {"E": "Ê", "P": "P̂", "N": "β", "B": "b"}  # the paper's symbols for the toolkit's sources
PAPER = ('"the [lost], [lost] and [lost] terms exhibit horizontal attention gradients consistent with those identified in the '
         'attention-only model"; "additional mechanisms are likely also contributing". No numbers; the three terms are INFERRED '
         '(spec A16) to be ÊP̂, P̂P̂ and βP̂ (EP, PP, NP), by analogy with EP / PP / BP.')


def paper_name(term: str) -> str:
    """``"NP"`` -> ``"βP̂"`` (single terms only)."""
    return "".join(NAMES.get(c, c) for c in term) if "+" not in term else term


def run(quick: bool, seeds: list[int]):
    rows = []
    for seed in seeds:
        r = trained("full", quick, seed)
        g = gradient_terms(r.model, r.task.probe("unseen_pair"))
        rows.append({"seed": seed, **{k: r.final.get(k) for k in ("single_object", "seen_pair", "unseen_pair")}, **g})
    terms = list(rows[0]["terms"])
    md = [f"Paper (App. R): {PAPER}", "",
          "Ours (mean ± std over seeds): max over heads of |ρ| (Spearman against the column), the slope per column in that "
          "head, the mean share of the row's spread over heads, and on how many seeds the term carries a gradient "
          f"(|ρ| ≥ {rows[0]['threshold']} in some head).", "",
          "| term | paper's name | max \\|ρ\\| | slope there | spread share | carries a gradient |", "|---|---|---|---|---|---|"]
    for t in terms:
        peak = [max(range(len(x["terms"][t]["monotonicity"])), key=lambda h: abs(x["terms"][t]["monotonicity"][h])) for x in rows]
        md.append(f"| {t} | {paper_name(t)} | {mean_std([abs(x['terms'][t]['monotonicity'][h]) for x, h in zip(rows, peak)])} | "
                  f"{mean_std([x['terms'][t]['slope'][h] for x, h in zip(rows, peak)])} | "
                  f"{mean_std([sum(x['terms'][t]['share']) / len(x['terms'][t]['share']) for x in rows])} | "
                  + (fraction([t in x["with_gradient"] for x in rows]) if "+" not in t else "") + " |")
    md += ["", "| seed | single / seen / unseen | terms with a gradient | key-position terms | exactly those |", "|---|---|---|---|---|"]
    md += [f"| {x['seed']} | {f(x['single_object'])} / {f(x['seen_pair'])} / {f(x['unseen_pair'])} | "
           f"{', '.join(paper_name(t) for t in x['with_gradient']) or 'none'} | {', '.join(paper_name(t) for t in x['key_position_terms'])} | "
           f"{x['exactly_key_position']} |" for x in rows]
    md += ["", f"Agreement: the terms with a gradient are exactly the key-position terms (spec A16 acceptance) on "
               f"{fraction([x['exactly_key_position'] for x in rows])} seeds; ÊP̂, P̂P̂ and βP̂ all carry one on "
               f"{fraction([{'EP', 'PP', 'NP'} <= set(x['with_gradient']) for x in rows])} seeds."]
    return rows, "\n".join(md)


EXPERIMENT = {"name": "app-r", "title": "App. R: the LayerNorm terms of the LN+MLP model, which carry the horizontal gradient",
              "paper": "App. R, Fig. 27", "time": "~1 s / 2 s cached (training its 3 models: ~45 min)"}


def main(argv: list[str] | None = None) -> int:
    return reproduce_main(EXPERIMENT["name"], run, argv)


if __name__ == "__main__":
    entry(main)
