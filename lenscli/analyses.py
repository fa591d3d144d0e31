"""The paper's mechanism analyses as commands: ``align``, ``phases``, ``rope``, ``text-attention``,
``checks``. Thin skins over `circuits.align`, `circuits.phases`, `circuits.rope`,
`circuits.text_bias` and `circuits.stat_checks` (see docs/mechanisms.md); registered on the app
by `register`. Every command prints a table, or one JSON object with ``--json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from lenscli.common import (CheckpointOption, JsonOption, ThreadsOption, require_checkpoint, require_free, require_kind,
                            use_threads, user_errors)

HtmlOption = Annotated[Optional[Path], typer.Option("--html", help="Also write the figure to this self-contained HTML file.",
                                                     show_default=False)]
ForceOption = Annotated[bool, typer.Option("--force", help="Overwrite an existing --html file.")]
SplitOption = Annotated[str, typer.Option("--split", help="Two-object split: unseen_pair, seen_pair or train_pair.")]


def _print_table(title: str, columns: list[str], rows: list[list]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table()
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    console = Console()
    console.print(Text(title, style="bold"))
    console.print(table)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _write_figure(figure, html: Path | None, title: str, force: bool) -> None:
    if html is not None:
        from circuits.report import write_figures

        typer.echo(f"figures: {write_figures([figure], html, title=title, force=force)}", err=True)


def _load(ckpt: Path, threads: int | None, html: Path | None = None, force: bool = False):
    require_checkpoint(ckpt)
    if html is not None:
        require_free(html, force)
    use_threads(threads)
    from circuits.checkpoint import load

    return load(ckpt)


def align(
    ckpt: CheckpointOption,
    permutations: Annotated[int, typer.Option("--permutations", min=0, help="Re-pairings of the permutation null.")] = 200,
    proper: Annotated[bool, typer.Option("--proper", help="Force det R = +1 (a rotation, not a reflection).")] = False,
    raw_norms: Annotated[bool, typer.Option("--raw-norms", help="Fit on the embeddings as they are (default: unit rows).")] = False,
    direction: Annotated[str, typer.Option("--direction", help="vision_to_text or text_to_vision.")] = "vision_to_text",
    as_json: JsonOption = False,
    html: HtmlOption = None,
    force: ForceOption = False,
    threads: ThreadsOption = None,
) -> None:
    """Rotation alignment of vision and text token embeddings, fitted on the training labels and
    scored on the held-out ones, with the permutation and initialisation nulls (Sec. 6.2, Fig. 7)."""
    require_kind(ckpt, "clip", "align")
    run = _load(ckpt, threads, html, force)
    from circuits.align import initial_model, rotation_alignment

    task = run.task
    result = rotation_alignment(run.model, task.train_labels, task.heldout_labels, unit=not raw_norms, proper=proper,
                                direction=direction, n_permutations=permutations, init_model=initial_model(run.cfg, task))
    if html is not None:
        from circuits.viz_mechanisms import alignment_heatmaps

        _write_figure(alignment_heatmaps(result), html, f"Token-embedding alignment of {ckpt}", force)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    keys = ["diagonal", "off_diagonal", "gap", "top1"]
    rows = [["raw", *(result.raw.get(k) for k in keys), None], ["rotated", *(result.rotated[k] for k in keys), result.rotated["top1_all"]]]
    if result.init is not None:
        rows.append(["rotated, at init", *(result.init["rotated"][k] for k in keys), result.init["rotated"]["top1_all"]])
    _print_table(f"Token-embedding alignment, fit on labels {result.fit_labels[0]}..{result.fit_labels[-1]}, "
                 f"held out {result.eval_labels[0]}..{result.eval_labels[-1]}",
                 ["held-out cosines", "diagonal", "off-diagonal", "gap", "top-1 (held-out)", "top-1 (all labels)"], rows)
    perm = result.permutation
    if perm:
        init_p = result.init["permutation"]["p"] if result.init else None
        typer.echo(f"permutation null ({perm['n']} re-pairings): diagonal {perm['null_mean']:.3f} ± {perm['null_std']:.3f}, "
                   f"p = {perm['p']:.3f}" + (f"; at init p = {init_p:.3f}" if init_p is not None else ""))


def phases(
    ckpt: CheckpointOption,
    tau: Annotated[float, typer.Option("--tau", help="Accuracy threshold of t1 and t2.")] = 0.99,
    fraction: Annotated[float, typer.Option("--fraction", help="t3: unseen-pair at this fraction of its final value.")] = 0.9,
    window: Annotated[float, typer.Option("--window", help="Half-width of the loss-bump windows, as a fraction of the run.")] = 0.05,
    as_json: JsonOption = False,
    html: HtmlOption = None,
    force: ForceOption = False,
) -> None:
    """Training phases t1 <= t2 <= t3 and the loss bumps near t1 and t2, from metrics.jsonl (App. D, Fig. 11)."""
    require_checkpoint(ckpt)
    if html is not None:
        require_free(html, force)
    from circuits.phases import training_phases

    p = training_phases(ckpt, tau=tau, unseen_fraction=fraction, window=window)
    if html is not None:
        from circuits.viz_mechanisms import phases_figure

        _write_figure(phases_figure(ckpt, p), html, f"Training phases of {ckpt}", force)
    if as_json:
        typer.echo(json.dumps(p.to_dict()))
        return
    _print_table(f"Training phases of {ckpt} ({p.last_step} steps; loss from {p.loss_source})",
                 ["boundary", "step", "largest loss bump within ± %d steps" % p.window, "at step"],
                 [["t1 single-object", p.t1, p.bump_t1, p.bump_t1_step], ["t2 seen-pair", p.t2, p.bump_t2, p.bump_t2_step],
                  ["t3 unseen-pair", p.t3, None, None]])
    typer.echo(f"consecutive (t1 <= t2 <= t3): {p.consecutive}")


def rope(ckpt: CheckpointOption, split: SplitOption = "unseen_pair", as_json: JsonOption = False, html: HtmlOption = None,
         force: ForceOption = False, threads: ThreadsOption = None) -> None:
    """App. J.3 on a rotary vision encoder: consistency (full, b_K = 0, PC1 keys), bias gradient g_ij,
    key PCA, effective rank of W_K, PC1 alignment and a_m profiles (Figs. 18-19)."""
    require_kind(ckpt, "clip", "rope")
    from circuits.checkpoint import read_config
    from circuits.errors import CircuitsError

    if read_config(ckpt).model.vision.positional != "rotary":
        raise CircuitsError(
            f"{ckpt} has a vision encoder with positional={read_config(ckpt).model.vision.positional!r}: the RoPE analyses "
            "need 'rotary'; for learned positions the consistency condition is the relational split of `lenscli bias`")
    run = _load(ckpt, threads, html, force)
    from circuits.rope import rope_analysis

    r = rope_analysis(run.model, run.task.probe(split))
    if html is not None:
        from circuits.viz_mechanisms import consistency_bars

        _write_figure(consistency_bars(r), html, f"RoPE consistency of {ckpt}", force)
    if as_json:
        typer.echo(json.dumps(r.to_dict()))
        return
    n, far = len(r.consistency), max(r.bias_gradient)
    _print_table(f"Consistency condition Δ·Δ' > 0 per head, vision layer 0, {split} (Fig. 19a)",
                 ["head", "|P_L - P_R|", "full", "b_K = 0", "b_K = 0, keys on PC1"],
                 [[f"H{h}", r.argmax_left_minus_right[h], r.consistency[h], r.consistency_no_bias[h], r.consistency_pc1[h]]
                  for h in range(n)])
    _print_table("Key geometry and the two mechanisms (Fig. 19b-e)",
                 ["head", "PC1 var", "r_eff " + "/".join(str(t) for t in r.effective_rank), "PC1·W_K", "a_m ρ",
                  "a_m maj.", "g δ=1", f"g δ={far}"],
                 [[f"H{h}", r.explained_variance[h][0], "/".join(str(r.effective_rank[t][h]) for t in r.effective_rank),
                   r.pc1_alignment[h], r.a_spearman[h], r.a_majority_sign[h], r.bias_gradient[1][0][h],
                   r.bias_gradient[far][0][h]] for h in range(n)])


def text_attention(ckpt: CheckpointOption, layer: Annotated[int, typer.Option("--layer", "-l")] = 0,
                   split: SplitOption = "unseen_pair", as_json: JsonOption = False, threads: ThreadsOption = None) -> None:
    """[EOT] attention over subject / relation / object / [EOT] per head, mean ± std over the
    captions of --split, and each head's subject-minus-object bias (Sec. 6.1, Fig. 6)."""
    require_kind(ckpt, "clip", "text-attention")
    run = _load(ckpt, threads)
    from circuits.text_bias import text_attention_bias

    r = text_attention_bias(run.model, run.task.probe(split, "text").tokens, layer)
    if as_json:
        typer.echo(json.dumps(r.to_dict()))
        return
    words = ["subject", "relation", "object", "[EOT]"]
    _print_table(f"[EOT] attention of the text encoder, layer {r.layer}, {r.n_captions} captions of {split} (mean ± std)",
                 ["head", *words, "bias (subj - obj)", "sign agreement"],
                 [[f"H{h}", *(f"{m:.3f} ± {s:.3f}" for m, s in zip(r.mean[h], r.std[h])), r.bias[h], r.sign_agreement[h]]
                  for h in range(len(r.bias))])


def checks(ckpt: CheckpointOption, split: SplitOption = "unseen_pair", as_json: JsonOption = False, threads: ThreadsOption = None) -> None:
    """Consistency between statistics: |P_left - P_right| vs the relational fraction, EP slope sign
    vs bias (Fig. 4c/5d, App. F), which layer-0 terms carry a gradient (App. R), and whether the
    model looks like App. G's non-generalizing one (per-label-pair argmax proportions)."""
    run = _load(ckpt, threads)
    from circuits.pair_bias import app_g_summary
    from circuits.stat_checks import bias_checks, gradient_terms

    probe = run.task.probe(split)
    rows, terms, app_g = bias_checks(run.model, probe), gradient_terms(run.model, probe), app_g_summary(run.model, probe)
    if as_json:
        typer.echo(json.dumps({"heads": rows, "gradient_terms": terms, "app_g": app_g.to_dict()}))
        return
    _print_table(f"Consistency of the head statistics, vision layer 0, {split}",
                 ["head", "|P_L - P_R|", "relational", "gap", "EP slope", "EP sign = bias"],
                 [[f"H{r['head']}", r["argmax_difference"], r["relational"], r["gap"], r["ep_slope"], r["ep_sign_matches_bias"]]
                  for r in rows])
    typer.echo(f"terms with |Spearman| >= {terms['threshold']} in some head: {', '.join(terms['with_gradient']) or 'none'} "
               f"(key-position terms: {', '.join(terms['key_position_terms'])})")
    typer.echo(f"App. G picture (every head |P_L - P_R| < 0.2 and |EP Spearman| < 0.5): {app_g.no_consistent_bias}; "
               f"per-pair std of P_left per head: {', '.join(f'{x:.2f}' for x in app_g.pair_std_left)}")


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    for name, fn in (("align", align), ("phases", phases), ("rope", rope), ("text-attention", text_attention), ("checks", checks)):
        app.command(name)(user_errors(fn))
