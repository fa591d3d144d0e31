"""One self-contained HTML report of a trained model: the paper's analyses on one page.

::

    from circuits.report import write_report
    write_report(circuits.load("runs/default"), "runs/default/report.html")   # a Run: model, task, history

The file embeds plotly.js once (no CDN, no MathJax, nothing fetched when it is opened) and
every figure of `circuits.viz` that applies: model card and accuracies, training curves
(Fig. 11), attention patterns and score terms of one unseen-pair and one seen-pair image with
its position swap (Fig. 4b, 5a-b), head bias (Fig. 4c) and relational share (Fig. 5d), the
ablation table (Fig. 5e), the terms' spread (Fig. 13) and horizontal gradient, the
image-caption similarity (Fig. 3), the rotation alignment of the token embeddings (Fig. 7) and
the text encoder's EOT attention (Fig. 6), over all captions and for one caption and its swap
(Fig. 6a). Sections that apply only to some runs (`applicable_sections`): training curves and
phases (App. D, Fig. 11) when the run has a metrics history; the RoPE mechanisms (App. J,
Figs. 18-19) for a rotary vision encoder.

The numbers in the summary come from `headline`, which the CLI can print as they are (or pass
back to `build_report` so that nothing is computed twice).
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import plotly.graph_objects as go
import plotly.offline
import torch
from jaxtyping import Int
from torch import Tensor

from circuits import viz
from circuits.ablate import PAPER_ABLATIONS, Ablation, ablated
from circuits.errors import CircuitsError
from circuits.evaluation import evaluate
from circuits.checkpoint import Run
from circuits.data import World
from circuits.models import HookedCLIP
from circuits import stats
from circuits.stats import HeadBias, head_bias

PathLike = str | os.PathLike[str]

#: Splits evaluated under each ablation: unseen-pair accuracy and label-set recognition (Fig. 5e, 16).
ABLATION_SPLITS: tuple[str, ...] = ("unseen_pair",)

#: Section titles, in page order (the training section only appears when a history is given).
SECTIONS: dict[str, str] = {
    "summary": "Summary",
    "card": "Model card",
    "training": "Training curves",
    "phases": "Training phases",
    "unseen_example": "Unseen-pair example: attention patterns and score terms",
    "seen_example": "Seen-pair example: attention patterns and score terms",
    "bias": "Head bias",
    "relational": "Relational vs label-specific attention",
    "ablation": "Term ablation",
    "spread": "Term spread",
    "gradient": "Horizontal gradient of the terms",
    "rope": "RoPE mechanisms",
    "similarity": "Image-text similarity",
    "alignment": "Vision-text embedding alignment",
    "text": "Text encoder EOT attention",
    "text_pair": "Text encoder: a caption and its swap",
}

#: Re-pairings of the alignment's permutation null in the report (fewer than `lenscli align`'s 200: p ≥ 1/51).
REPORT_PERMUTATIONS = 50

MAX_BYTES = 10 * 1024 * 1024


class ReportError(CircuitsError):
    """A report that cannot be written (existing file without ``force``, unwritable path)."""


# ------------------------------------------------------------------------------ numbers
def applicable_ablations(
    model: HookedCLIP, ablations: dict[str, Ablation] | None = None
) -> tuple[dict[str, Ablation], list[str]]:
    """The ablations (default `circuits.ablate.PAPER_ABLATIONS`) whose terms every vision layer
    has, and the names of the others (e.g. BP without Q/K biases, EP with rotary or no
    positional embedding)."""
    ablations = PAPER_ABLATIONS if ablations is None else ablations
    out, skipped = {}, []
    for name, abl in ablations.items():
        ok = all(
            set(abl.terms) <= set(enc.term_names(layer)) and set(abl.values) <= set(enc.value_sources(layer))
            for enc in (model.encoders[e] for e in abl.encoders)
            for layer in (range(enc.cfg.n_layers) if abl.layers is None else abl.layers)
        )
        if ok:
            out[name] = abl
        else:
            skipped.append(name)
    return out, skipped


def _headline(
    run: Run,
    ablations: dict[str, Ablation] | None = None,
    ablation_splits: Sequence[str] = ABLATION_SPLITS,
    split: str = "unseen_pair",
) -> dict[str, Any]:
    start = time.perf_counter()
    model, world = run.model, run.task
    accuracies = evaluate(model, world)
    bias = head_bias(model, world.probe(split, "vision"))
    runnable, skipped = applicable_ablations(model, ablations)
    splits = tuple(ablation_splits)
    table = {"baseline": evaluate(model, world, splits)}
    for name, abl in runnable.items():
        with ablated(model, abl):
            table[name] = evaluate(model, world, splits)
    return {
        "config": run.cfg.to_dict(),
        "world": world.summary(),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "accuracies": accuracies,
        "head_bias": dataclasses.asdict(bias),
        "head_bias_rows": bias.rows(),
        "ablation": table,
        "ablation_specs": {name: abl.to_dict() for name, abl in runnable.items()},
        "ablation_skipped": skipped,
        "seconds": round(time.perf_counter() - start, 3),
    }


def headline(
    run: Run,
    *,
    ablations: dict[str, Ablation] | None = None,
    ablation_splits: Sequence[str] = ABLATION_SPLITS,
    split: str = "unseen_pair",
) -> dict[str, Any]:
    """The numbers the report's summary shows, JSON-serialisable (``json.dumps`` works):

    * ``"accuracies"``: `circuits.evaluation.evaluate` (single_object, seen_pair, unseen_pair,
      label_set; top1 / top2 for bidirectional captions);
    * ``"world"``: `World.summary` (split sizes and caption count); ``"config"``; ``"n_parameters"``;
    * ``"head_bias"``: the vision `HeadBias` on ``split`` as a dict (``HeadBias(**d)`` rebuilds
      it), ``"head_bias_rows"``: `HeadBias.rows` (one dict per head; Fig. 4c, 5d);
    * ``"ablation"``: condition -> metrics on ``ablation_splits``, ``"baseline"`` first, then each
      of ``ablations`` (default `circuits.ablate.PAPER_ABLATIONS`: EP, PP, BP, EP+PP, EP+PP+BP on the vision encoder,
      Fig. 5e) that the model has the terms for; ``"ablation_specs"`` the `Ablation`\\ s as dicts,
      ``"ablation_skipped"`` the names left out. The ablated numbers are what
      `circuits.ablate.evaluate_ablation` gives, restricted to ``ablation_splits``.
    """
    return _headline(run, ablations, ablation_splits, split)


def headline_tables(numbers: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The summary tables of a `headline` as rows (for the HTML report and the CLI alike):
    ``"accuracies"`` (metric, value), ``"head_bias"`` (one row per head: ``head``, the
    `HeadBias.rows` fields under the CLI's headings `HeadBias.labels` — ``left``, ``right``,
    ``max left``, ..., ``rel→left``, ``label`` — and ``relational``) and ``"ablation"``
    (condition and one column per metric)."""
    accuracies = [{"metric": k, "accuracy": v} for k, v in numbers["accuracies"].items()]
    labels = HeadBias(**numbers["head_bias"]).labels()
    bias = []
    for row in numbers["head_bias_rows"]:
        relational = None if row["relational_first"] is None else row["relational_first"] + row["relational_second"]
        bias.append({"head": f"H{row['head']}", **{labels[k]: row[k] for k in labels}, "relational": relational})
    ablation = [{"ablated": name, **metrics} for name, metrics in numbers["ablation"].items()]
    return {"accuracies": accuracies, "head_bias": bias, "ablation": ablation}


GRADIENT_TERMS = ("EP", "PP", "BP", "EE", "PE")


def report_gradient_terms(model: HookedCLIP) -> tuple[str, ...] | None:
    """Those of `GRADIENT_TERMS` the vision encoder's first layer has (None: its default terms)."""
    return tuple(t for t in GRADIENT_TERMS if t in model.vision.term_names(0)) or None


def example_images(world: World) -> dict[str, Int[Tensor, " seq"]]:
    """One two-object image per split ``"unseen_pair"`` / ``"seen_pair"`` (where not empty):
    the middle one, among the images whose left label is the smaller, of its split. `viz.swap_objects`
    gives the same pair with the positions swapped (Fig. 4b)."""
    out = {}
    for split in ("unseen_pair", "seen_pair"):
        data = world[split]
        if len(data) == 0:
            continue
        ascending = (data.objects[:, 0] < data.objects[:, 1]).nonzero()[:, 0]
        index = ascending if len(ascending) else torch.arange(len(data))
        out[split] = data.images[int(index[len(index) // 2])]
    return out


def applicable_sections(run: Run) -> list[str]:
    """The keys of `SECTIONS` that the report of ``run`` has, in page order: the training
    sections need a metrics history, the RoPE section a rotary vision encoder (App. J)."""
    rotary = run.cfg.model.vision.positional == "rotary"
    return [k for k in SECTIONS if (k not in ("training", "phases") or run.history) and (k != "rope" or rotary)]


# ------------------------------------------------------------------------------ HTML
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1500px;
       padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
.scroll { max-width: 100%; overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; } th { background: #f4f4f4; }
td:first-child, th:first-child { text-align: left; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.8em; max-height: 30em; }
.note { color: #555; font-size: 0.9em; } nav a { margin-right: 1em; }
.tables { display: flex; flex-wrap: wrap; gap: 2em; }
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def html_table(rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain HTML table of dict rows (floats to 3 decimals), escaped."""
    if not rows:
        return '<p class="note">(empty)</p>'
    columns = list(columns) if columns is not None else list(dict.fromkeys(k for row in rows for k in row))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(row.get(c, '')))}</td>" for c in columns) + "</tr>" for row in rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


class _Page:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.n_figures = 0

    def section(self, key: str, intro: str = "") -> None:
        self.parts.append(f'<h2 id="{key}">{html.escape(SECTIONS[key])}</h2>')
        if intro:
            self.parts.append(f'<p class="note">{intro}</p>')

    def add(self, fragment: str) -> None:
        self.parts.append(fragment)

    def figure(self, fig: go.Figure) -> None:
        """Add ``fig`` as wide as the page (never wider: a fixed width beyond it would be cut)."""
        self.n_figures += 1
        fig = go.Figure(fig).update_layout(width=None, autosize=True)
        self.parts.append(fig.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False,
                                      div_id=f"figure-{self.n_figures}", default_width="100%",
                                      config={"displaylogo": False, "responsive": True}))


def build_report(
    run: Run,
    *,
    title: str | None = None,
    headline: dict[str, Any] | None = None,
) -> str:
    """The report of ``run`` as one HTML document (see the module docstring), with plotly.js
    inlined once. The training-curve section appears when the run has a metrics history.
    ``headline``: a precomputed `headline` of this run, to reuse numbers already shown
    elsewhere; computed here otherwise.
    """
    numbers = headline if headline is not None else _headline(run)
    model, world = run.model, run.task
    history = run.history or None
    vision_terms = model.vision.term_names(0)
    title = title or f"circuits report: {world.cfg.n_labels} labels, {run.cfg.model.vision.n_layers}-layer vision encoder"
    page = _Page()
    page.add(f"<h1>{html.escape(title)}</h1>")
    page.add('<p class="note">Left-right symmetry breaking in a toy CLIP (arXiv 2601.12809); figure numbers refer to'
             " that paper. Generated " + html.escape(time.strftime("%Y-%m-%d %H:%M:%S")) + ".</p>")
    keys = applicable_sections(run)
    page.add("<nav>" + "".join(f'<a href="#{k}">{html.escape(SECTIONS[k])}</a>' for k in keys) + "</nav>")
    tables = headline_tables(numbers)

    bias = HeadBias(**numbers["head_bias"])
    first, second = bias.names
    page.section("summary", "Accuracies (Sec. 2.3; label_set: App. H), unseen-pair accuracy after zero-ablating"
                            f" score terms (Fig. 5e), and the {first}/{second} bias of the vision heads on the"
                            f" {html.escape(bias.split)} images (Fig. 4c, 5d): {first} / {second}, the fraction of"
                            f" images whose CLS row attends more to that object; max: its maximum falls on it;"
                            f" rel→: relational toward it (the position terms decide); label: label-specific.")
    page.add('<div class="tables">' + html_table(tables["accuracies"]) + html_table(tables["ablation"]) + "</div>")
    page.add(html_table(tables["head_bias"]))

    page.section("card")
    size = [{"split": k, "size": v} for k, v in numbers["world"].items()]
    cfg = numbers["config"]
    # one row per setting, one column per encoder: as wide as two encoders, however many settings
    enc_rows = [{"encoder setting": k, **{name: cfg["model"][name].get(k, "") for name in ("vision", "text")}}
                for k in dict.fromkeys([*cfg["model"]["vision"], *cfg["model"]["text"]])]
    page.add('<div class="tables">' + html_table(size) + html_table(
        [{"parameter": "parameters", "value": numbers["n_parameters"]},
         {"parameter": "vision score terms", "value": " ".join(vision_terms)},
         {"parameter": "captions", "value": world.cfg.captions},
         {"parameter": "training labels", "value": f"1..{world.cfg.n_pair_labels}"},
         {"parameter": "held-out labels", "value": f"{world.cfg.n_pair_labels + 1}..{world.cfg.n_labels}"}]) + "</div>")
    page.add(html_table(enc_rows))
    page.add(f"<details><summary>full config</summary><pre>{html.escape(json.dumps(cfg, indent=2))}</pre></details>")

    if history is not None:
        page.section("training", "Accuracy of every split and the training loss during training (Fig. 11).")
        page.figure(viz.training_curves(history))
        _phases_section(page, history)

    examples = example_images(world)
    for split, key in (("unseen_pair", "unseen_example"), ("seen_pair", "seen_example")):
        if split not in examples:
            continue
        image = examples[split]
        page.section(key, f"The image {html.escape(world.image_text(image))!s} and the same labels with their"
                          " positions swapped (Fig. 4b); then every pre-softmax score term of the first, with the"
                          " CLS row outlined (Fig. 5a, 12, 14), and the CLS row of the terms (Fig. 5b).")
        page.figure(viz.attention_patterns(model, world, image, swap=True))
        page.figure(viz.term_grid(model, world, image))
        page.figure(viz.term_profiles(model, world, image))

    page.section("bias", f"Fraction of two-object images on which each head's CLS query attends more to the {first}"
                         f" or the {second} object, and where its maximal attention falls (Fig. 4c).")
    page.figure(viz.bias_bars(bias))
    page.figure(viz.bias_bars(bias, argmax=True))

    page.section("relational", f"An (image, head) is relational when the key-position terms"
                               f" ({html.escape(bias.position_terms)}) decide which object gets more attention,"
                               f" |D_pos| &gt; |D_tok| (token terms {html.escape(bias.token_terms)}); Fig. 5c-d.")
    if bias.position_terms:
        page.figure(viz.relational_bars(bias))
    else:
        page.add('<p class="note">Not defined for this model: its vision encoder has no learned positional'
                 " embedding, so no score term has key source P.</p>")

    skipped = numbers.get("ablation_skipped") or []
    page.section("ablation", "Zero-ablation of score terms in every vision head at inference (Fig. 5e);"
                             " label_set: the top-1 caption names both objects, in either order (App. H)."
                             + (f" Not applicable to this model: {html.escape(', '.join(skipped))}." if skipped else ""))
    page.add(html_table(tables["ablation"]))
    page.figure(viz.ablation_bars(numbers["ablation"]))

    spread, gradients = stats.spread_and_gradients(model, world.probe("unseen_pair"),
                                                   gradient_terms=report_gradient_terms(model))
    page.section("spread", "Standard deviation of each term along the CLS row relative to that of the full"
                           " scores, mean over unseen-pair images (App. E, Fig. 13).")
    page.figure(viz.term_spread_bars(spread))

    page.section("gradient", "Mean of each term at every pixel column of the CLS row over the unseen-pair"
                             " images (Fig. 5b, 14, 15b); below, each curve's monotonicity (Spearman rho with the"
                             " column) and least-squares slope per column.")
    page.figure(viz.term_gradient_figure(gradients))
    page.add(html_table(viz.gradient_rows(gradients)))

    if "rope" in keys:
        _rope_section(page, run, numbers["accuracies"])

    page.section("similarity", "Cosine similarity of unseen-pair images with the unseen-pair captions (Fig. 3 right).")
    page.figure(viz.similarity_heatmap(model, world, "unseen_pair", max_images=120))
    _alignment_section(page, run)

    try:
        text_probe = world.probe("unseen_pair", "text")
    except CircuitsError as e:  # e.g. a world without two-object captions
        text_probe, why = None, str(e)
    subject, obj = text_probe.names if text_probe is not None else ("first", "second")
    page.section("text", "EOT attention over the words of the unseen-pair captions, mean and std (Fig. 6),"
                         f" and how often each head attends more to the {subject} or the {obj} of the caption (Fig. 6b).")
    page.figure(viz.text_attention(model, world))
    try:
        if text_probe is None:
            raise CircuitsError(why)
        page.figure(viz.bias_bars(head_bias(model, text_probe)))
    except CircuitsError as e:  # e.g. a world without two-object captions
        page.add(f'<p class="note">{html.escape(str(e))}</p>')
    _text_pair_section(page, run, text_probe)

    return _document(title, page)


def _note(page: _Page, error: Exception) -> None:
    page.add(f'<p class="note">{html.escape(str(error))}</p>')


def _phases_section(page: _Page, history: list[dict]) -> None:
    """App. D: phase boundaries and loss bumps, the accuracies with the phases shaded (Fig. 11)."""
    from circuits.phases import training_phases
    from circuits.viz_mechanisms import phases_figure

    page.section("phases", "t1 / t2: first evaluation from which single-object / seen-pair accuracy stays ≥ 0.99"
                           " (within 0.02); t3: first with unseen-pair ≥ 0.9 × its final value; the largest relative"
                           " jump of the training loss above its running minimum within 5 % of the run around t1"
                           " and t2 (App. D, Fig. 11; thresholds are our choices, the paper gives none).")
    try:
        p = training_phases(history)
    except CircuitsError as e:
        return _note(page, e)
    page.add(html_table([{"boundary": name, "step": t, "largest loss bump nearby": bump, "at step": at}
                         for name, t, bump, at in (("t1 single-object", p.t1, p.bump_t1, p.bump_t1_step),
                                                   ("t2 seen-pair", p.t2, p.bump_t2, p.bump_t2_step),
                                                   ("t3 unseen-pair", p.t3, None, None))]))
    page.figure(phases_figure(history, p))


def _rope_section(page: _Page, run: Run, accuracies: dict[str, float]) -> None:
    """App. J.2-J.3 on a rotary vision encoder (Figs. 18, 19)."""
    from circuits.rope import rope_analysis
    from circuits.viz_mechanisms import consistency_bars, rope_accuracy_figure, rope_mechanisms_figure

    page.section("rope", "A rotary vision encoder has no learned positions, so no score term has key source P: the"
                         " paper's App. J explains the bias by the consistency condition Δ·Δ′ &gt; 0 per (pair, positions)"
                         " (Fig. 19a), the rotated key bias (Mechanism 1, g_ij, Fig. 19b) and a low-rank key subspace"
                         " (Mechanism 2: key PCA, effective rank of W_K, a_m; Fig. 19c-e).")
    probe = run.task.probe("unseen_pair")
    try:
        rope = rope_analysis(run.model, probe)
    except CircuitsError as e:
        return _note(page, e)
    page.figure(rope_accuracy_figure(accuracies, head_bias(run.model, probe)))
    page.figure(consistency_bars(rope))
    page.figure(rope_mechanisms_figure(rope))


def _alignment_section(page: _Page, run: Run) -> None:
    """Sec. 6.2: orthogonal Procrustes between vision and text token embeddings (Fig. 7)."""
    from circuits.align import initial_model, rotation_alignment
    from circuits.viz_mechanisms import alignment_heatmaps

    world = run.task
    page.section("alignment", "Cosine of the vision and text token embeddings of the held-out labels, raw and after"
                              " an orthogonal map R fitted on the training labels (Sec. 6.2, Fig. 7). With few labels"
                              " in many dimensions R fits any pairs, so only held-out numbers count: p is the share of"
                              f" {REPORT_PERMUTATIONS} random re-pairings of the training labels that align the held-out"
                              " ones as well; the same fit at initialisation is the other null.")
    try:
        a = rotation_alignment(run.model, world.train_labels, world.heldout_labels, n_permutations=REPORT_PERMUTATIONS,
                               init_model=initial_model(run.cfg, world))
    except CircuitsError as e:
        return _note(page, e)
    keys = ("diagonal", "off_diagonal", "gap", "top1")
    rows = [{"held-out cosines": "raw", **{k: a.raw.get(k) for k in keys}},
            {"held-out cosines": "rotated", **{k: a.rotated[k] for k in keys}, "permutation p": a.permutation.get("p")},
            {"held-out cosines": "rotated, at initialisation", **{k: a.init["rotated"][k] for k in keys},
             "permutation p": a.init["permutation"].get("p")}]
    page.add(html_table(rows))
    page.figure(alignment_heatmaps(a))


def _text_pair_section(page: _Page, run: Run, text_probe) -> None:
    """Sec. 6.1: the [EOT] row of one caption and of its swap (Fig. 6a)."""
    from circuits.text_bias import caption_pair, text_attention_bias
    from circuits.viz_mechanisms import caption_pair_figure

    page.section("text_pair", "Fig. 6(a): the paper's captions \"17 is on the left of 19\" and \"19 is on the left of"
                              " 17\" (here two held-out labels): a head biased toward the subject gives it the most"
                              " weight whichever label it is.")
    try:
        if text_probe is None:
            raise CircuitsError("this world has no two-object captions")
        tokens = caption_pair(text_probe.tokens)
    except CircuitsError as e:
        return _note(page, e)
    result = text_attention_bias(run.model, tokens)
    page.figure(caption_pair_figure(result, [run.task.position_labels(t, "text") for t in tokens]))


def _document(title: str, page: _Page) -> str:
    plotly_js = plotly.offline.get_plotlyjs()
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n"
        f'<script type="text/javascript">{plotly_js}</script>\n</head>\n<body>\n'
        + "\n".join(page.parts)
        + "\n</body>\n</html>\n"
    )


def write_report(
    run: Run,
    path: PathLike,
    *,
    force: bool = False,
    title: str | None = None,
    headline: dict[str, Any] | None = None,
) -> Path:
    """Write `build_report` to ``path`` atomically (a temporary file in the same directory,
    then renamed into place) and return the path. An existing file is only replaced with
    ``force``; otherwise `ReportError`, and nothing is written. A prefix-LM run (``model.kind =
    "prefix_lm"``) gets `circuits.report_vlm.build_vlm_report`, which computes its own numbers."""
    check_free(path, force)
    if run.cfg.model.kind == "prefix_lm":
        if headline is not None:
            raise ReportError("headline numbers are those of the CLIP report; a prefix-LM report computes its own")
        from circuits.report_vlm import build_vlm_report  # same layer; imported here as it imports this module

        return write_html(build_vlm_report(run, title=title), path, force)
    return write_html(build_report(run, title=title, headline=headline), path, force)


def figures_html(figures: Sequence[go.Figure], title: str, after: str = "") -> str:
    """Figures on one self-contained HTML page (plotly.js inlined once, nothing fetched);
    ``after``: an HTML fragment (e.g. `html_table`) placed below them."""
    page = _Page()
    page.add(f"<h1>{html.escape(title)}</h1>")
    for fig in figures:
        page.figure(fig)
    if after:
        page.add(after)
    return _document(title, page)


def write_figures(figures: Sequence[go.Figure], path: PathLike, *, title: str = "circuits figures", force: bool = False) -> Path:
    """`figures_html` written to ``path`` like `write_report` (atomic; no overwrite without ``force``)."""
    check_free(path, force)
    return write_html(figures_html(figures, title), path, force)


def check_free(path: PathLike, force: bool) -> None:
    """Raise `ReportError` unless ``path`` may be written (not a directory; absent, or ``force``)."""
    target = Path(os.path.abspath(path))
    if target.is_dir():
        raise ReportError(f"{target} is a directory; give a file name such as {target / 'report.html'}")
    if target.exists() and not force:
        raise _exists(target)


def _exists(target: Path) -> ReportError:
    return ReportError(f"{target} exists; pass force=True to overwrite it or choose another path",
                       cli=f"{target} exists; pass --force to overwrite it or choose another path")


def write_html(document: str, path: PathLike, force: bool) -> Path:
    """Write ``document`` to ``path`` atomically (temporary file, then rename; no clobbering without ``force``)."""
    target = Path(os.path.abspath(path))
    data = document.encode("utf-8")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise ReportError(f"cannot write to {target.parent}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        if force:
            os.replace(tmp, target)
        else:
            _link_no_clobber(Path(tmp), target)
    except OSError as e:
        raise ReportError(f"cannot write {target}: {e.strerror}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _link_no_clobber(tmp: Path, target: Path) -> None:
    """Put ``tmp`` at ``target`` unless something appeared there meanwhile (atomic where the
    file system has hard links)."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise _exists(target) from None
    except OSError:  # no hard links here: check, then rename
        if target.exists():
            raise _exists(target) from None
        os.replace(tmp, target)
