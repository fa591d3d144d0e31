"""Sec. 6.1, Fig. 6 (A6): the text encoder's [EOT] attention is biased toward one word.

Per head, the [EOT] query's attention over subject / relation / object / [EOT], mean ± std over
the ordered captions of the held-out labels (Fig. 6b, c), the bias mean(subject) − mean(object)
and how many captions share its sign (`circuits.text_bias.text_attention_bias`); and the Fig. 6(a)
pair, "17 is on the left of 19" against "19 is on the left of 17": does the head's favourite
word stay the subject (or the object) whichever label it is? Default models at every seed.

    lenscli reproduce fig6 --quick         # ~1 s
    lenscli reproduce fig6 --seeds 3       # full: the 3 default models (trained once, cached)
"""

from __future__ import annotations

from mechanisms_common import entry, fraction, reproduce_main, trained

from circuits import viz
from circuits.text_bias import caption_pair, text_attention_bias
from circuits.viz_mechanisms import caption_pair_figure

AGREEMENT = 0.9  # the spec's acceptance: a head's sign holds on >= 90 % of the captions
PAPER = ('"head 3 exhibits a pronounced leftward bias in EOT→word-token attention: the subject entity (the first-mentioned '
         'object) receives the largest weight, independent of whether its label is 17 or 19"; "Head 3 is the most strongly '
         'left-biased, whereas heads 0, 1, and 2 show rightward bias." (Head indices are seed-specific.)')


def run(quick: bool, seeds: list[int]):
    rows, figures = [], []
    for seed in seeds:
        r = trained("default", quick, seed)
        captions = r.task.probe("unseen_pair", "text").tokens
        t = text_attention_bias(r.model, captions)
        pair_tokens = caption_pair(captions)
        pair = text_attention_bias(r.model, pair_tokens)
        words = [r.task.position_labels(c, "text") for c in pair_tokens]
        # per head: the word with the most weight in each caption of the pair (0 subject, 2 object)
        favourite = [[max(range(len(row)), key=row.__getitem__) for row in (pair.per_caption[0][h], pair.per_caption[1][h])]
                     for h in range(len(t.bias))]
        if not figures:
            figures += [caption_pair_figure(pair, words), viz.text_attention(r.model, r.task)]
        steady = [b if a >= AGREEMENT else 0.0 for b, a in zip(t.bias, t.sign_agreement)]
        rows.append({"seed": seed, "n_captions": t.n_captions, "mean": t.mean, "std": t.std, "bias": t.bias,
                     "sign_agreement": t.sign_agreement, "pair": [" ".join(w[:3]) for w in words],
                     "pair_attention": pair.per_caption, "pair_favourite": favourite,
                     "accept": any(x > 0 for x in steady) and any(x < 0 for x in steady)})
    heads = len(rows[0]["bias"])
    md = [f"Paper (Sec. 6.1, Fig. 6): {PAPER}", "",
          f"Ours: [EOT] attention per head over the {rows[0]['n_captions']} held-out captions; bias = mean att[subject] − "
          "mean att[object] (+: toward the first-mentioned, 'left'), with the share of captions of the same sign.", "",
          "| seed | " + " | ".join(f"H{h} bias (sign share)" for h in range(heads)) + " | A6 acceptance |",
          "|---|" + "---|" * heads + "---|"]
    md += [f"| {x['seed']} | " + " | ".join(f"{b:+.2f} ({a:.0%})" for b, a in zip(x["bias"], x["sign_agreement"]))
           + f" | {x['accept']} |" for x in rows]
    md += ["", "Mean ± std of the [EOT] attention at subject / relation / object / [EOT], seed 0:", "",
           "| head | subject | relation | object | [EOT] |", "|---|---|---|---|---|"]
    x = rows[0]
    md += [f"| H{h} | " + " | ".join(f"{m:.2f} ± {s:.2f}" for m, s in zip(x["mean"][h], x["std"][h])) + " |" for h in range(heads)]
    word = {0: "subject", 1: "relation", 2: "object", 3: "[EOT]"}
    md += ["", f"Fig. 6(a) pair ('{x['pair'][0]}' / '{x['pair'][1]}'): the word with the most weight per head, per seed:", "",
           "| seed | " + " | ".join(f"H{h}" for h in range(heads)) + " |", "|---|" + "---|" * heads]
    md += [f"| {y['seed']} | " + " | ".join(f"{word[a]} / {word[b]}" for a, b in y["pair_favourite"]) + " |" for y in rows]
    md += ["", f"Agreement: the A6 acceptance (a head biased toward the subject and a head biased toward the object, each "
               f"with its sign on ≥ {AGREEMENT:.0%} of the captions) holds on {fraction([y['accept'] for y in rows])} seeds; "
               f"heads whose favourite word is the subject in both captions of the pair: "
               f"{', '.join(str(sum(a == b == 0 for a, b in y['pair_favourite'])) for y in rows)} (per seed)."]
    return rows, "\n".join(md), figures


EXPERIMENT = {"name": "fig6", "title": "Sec. 6.1: the text encoder's [EOT] attention is biased toward the subject or the object",
              "paper": "Sec. 6.1, Fig. 6", "time": "~1 s / 3 s cached (training its 3 models: ~11 min)"}


def main(argv: list[str] | None = None) -> int:
    return reproduce_main(EXPERIMENT["name"], run, argv)


if __name__ == "__main__":
    entry(main)
