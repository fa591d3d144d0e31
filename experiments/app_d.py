"""App. D, Fig. 11 (A3): three training phases and a loss jump at the first boundary.

From each model's metrics (every evaluation, and the training loss of every step): t1 / t2 = the
first evaluation from which single-object / seen-pair accuracy stays ≥ 0.99 (within 0.02), t3 =
the first with unseen-pair ≥ 0.9 × its final value, and the largest relative jump of the loss
above its running minimum within ±5 % of the run around t1 and t2
(`circuits.phases.training_phases`; the thresholds are the spec's CHOICEs). Three models at every
seed: the simplified model (full batch, the toolkit's default), the same with minibatches of 256
(the paper used minibatches; loss jumps may need them), and the LayerNorm + MLP model of Fig. 3
(minibatches of 256; shared with app-r).

    lenscli reproduce app-d --quick        # ~2 s
    lenscli reproduce app-d --seeds 3      # full: 9 models (trained once, cached; the LN+MLP ones ~10 min each)
"""

from __future__ import annotations

from mechanisms_common import entry, f, fraction, reproduce_main, trained

from circuits.phases import training_phases
from circuits.viz_mechanisms import phases_figure

KINDS = {"default": "simplified, full batch", "minibatch": "simplified, batch 256", "full": "LN + MLP (Fig. 3), batch 256"}
PAPER = ('"single-object positional, seen-pair configuration, and unseen-pair generalization are achieved consecutively"; '
         '"We observe pronounced jumps in training loss near the phase-1/phase-2 boundary, whereas any analogous signature '
         'at the phase-2/phase-3 boundary is weak or absent."')


def run(quick: bool, seeds: list[int]):
    rows, figures = [], []
    for kind in [k for k in KINDS if not (quick and k == "minibatch")]:  # the quick world has < 256 training images
        for seed in seeds:
            r = trained(kind, quick, seed)
            p = training_phases(r.history)
            if seed == seeds[0]:
                figures.append(phases_figure(r.history, p).update_layout(title_text=f"{KINDS[kind]}, seed {seed}: t1 = {p.t1},"
                                                                                      f" t2 = {p.t2}, t3 = {p.t3} (App. D)"))
            louder = None if p.bump_t1 is None or p.bump_t2 is None else p.bump_t1 > p.bump_t2
            rows.append({"kind": kind, "seed": seed, **p.to_dict(), "jump_at_t1_larger": louder})
    md = [f"Paper (App. D, Fig. 11): {PAPER} No thresholds or numbers.", "",
          "| model | seed | t1 | t2 | t3 | t1 ≤ t2 ≤ t3 | largest loss bump near t1 (step) | near t2 (step) | bump t1 > bump t2 | final unseen-pair |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    md += [f"| {KINDS[x['kind']]} | {x['seed']} | {x['t1']} | {x['t2']} | {x['t3']} | {x['consecutive']} | {f(x['bump_t1'], 4)} "
           f"({x['bump_t1_step']}) | {f(x['bump_t2'], 4)} ({x['bump_t2_step']}) | {x['jump_at_t1_larger']} | "
           f"{f(x['final']['unseen_pair'])} |" for x in rows]
    md += ["", "Agreement, per model (runs where it holds):", ""]
    for kind, name in KINDS.items():
        sub = [x for x in rows if x["kind"] == kind]
        if not sub:
            continue
        big = [x["bump_t1"] for x in sub if x["bump_t1"] is not None]
        md.append(f"* {name}: phases consecutive on {fraction([x['consecutive'] for x in sub])}; loss jump larger at t1 "
                  f"than at t2 on {fraction([bool(x['jump_at_t1_larger']) for x in sub])}; largest jump near t1 "
                  f"{f(max(big), 4) if big else 'n/a'} of the running minimum.")
    return rows, "\n".join(md), figures


EXPERIMENT = {"name": "app-d", "title": "App. D: training phases t1 <= t2 <= t3 and the loss jumps near them",
              "paper": "App. D, Fig. 11", "time": "~3 s / 2 s cached (training its 9 models: ~60 min)"}


def main(argv: list[str] | None = None) -> int:
    return reproduce_main(EXPERIMENT["name"], run, argv)


if __name__ == "__main__":
    entry(main)
