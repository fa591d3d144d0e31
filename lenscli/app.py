"""The ``lenscli`` command line: train toy CLIP models, then evaluate and dissect their checkpoints.

Commands live here; what they share (error handling, --config/--set, tables) is in
`lenscli.common`. Every user error ends as one ``error: ...`` line on stderr and exit code 2.
"""

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from lenscli.common import (
    CheckpointOption,
    ConfigOption,
    JsonOption,
    SetOption,
    ThreadsOption,
    metrics_json,
    print_metrics,
    require_checkpoint,
    require_free,
    training_config,
    use_threads,
    user_errors,
)
from lenscli.tables import print_ablation, print_bias, print_headline, print_profile, print_term_summary

app = typer.Typer(
    name="lenscli",
    help="Train toy CLIP-style models of left/right relations and inspect their checkpoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # a bug's traceback should not dump model weights
)

from lenscli import sweep as _sweep  # noqa: E402  (sweep and reproduce commands live in lenscli/sweep.py)

app.add_typer(_sweep.app)
app.command("reproduce")(_sweep.reproduce)
from lenscli import vlm  # noqa: E402  (the prefix-LM diagnostics: lenscli vlm ...)

app.add_typer(vlm.app, name="vlm")

RUNS_DIR = Path("runs")


def default_out_dir(root: Path = RUNS_DIR) -> Path:
    """``runs/<YYYYmmdd-HHMMSS>``, with ``-2``, ``-3``, ... appended if that is taken."""
    base = root / time.strftime("%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists() or path.is_symlink():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


@app.command()
@user_errors
def train(
    config: ConfigOption = None,
    overrides: SetOption = None,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", "-o", help="Checkpoint directory to write.  [default: runs/<YYYYmmdd-HHMMSS>]",
                     show_default=False),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing checkpoint at --out.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    threads: ThreadsOption = None,
) -> None:
    """Train a model (defaults, or --config, then --set overrides) and save it as a checkpoint."""
    cfg = training_config(config, overrides, threads)  # every check before torch is imported
    from circuits.evaluation import evaluate
    from circuits.runtime import set_threads
    from circuits.train import train_to_directory

    set_threads(cfg.train.threads)  # also for the evaluation after training

    run = train_to_directory(cfg, out or default_out_dir(), force=force, progress=not quiet)
    seconds = run.history[-1]["seconds"] if run.history else 0.0  # training time as logged in metrics.jsonl
    print_metrics(
        evaluate(run.model, run.task),
        title=f"Final accuracies after {cfg.train.steps} steps",
        extra={"train time": f"{seconds:.1f} s", "checkpoint": str(run.path)},
    )


@app.command("eval")
@user_errors
def eval_(ckpt: CheckpointOption, as_json: JsonOption = False, threads: ThreadsOption = None) -> None:
    """Evaluate a checkpoint: retrieval accuracy on every generalization split."""
    require_checkpoint(ckpt)
    use_threads(threads)
    from circuits.checkpoint import load
    from circuits.evaluation import evaluate

    run = load(ckpt)
    metrics = evaluate(run.model, run.task)
    if as_json:
        typer.echo(metrics_json(metrics))
    else:
        print_metrics(metrics, title=f"Accuracies of {ckpt}")


EncoderOption = Annotated[str, typer.Option("--encoder", "-e", help="vision or text.")]
LayerOption = Annotated[int, typer.Option("--layer", "-l", help="Attention layer (negative counts from the end).")]
HtmlOption = Annotated[
    Optional[Path],
    typer.Option("--html", help="Also write the figures to this self-contained HTML file.", show_default=False),
]
HtmlForceOption = Annotated[bool, typer.Option("--force", help="Overwrite an existing --html file.")]
SplitOption = Annotated[
    str, typer.Option("--split", help="Two-object split the statistics run on: unseen_pair, seen_pair or train_pair.")
]


@app.command()
@user_errors
def decompose(
    ckpt: CheckpointOption,
    encoder: EncoderOption = "vision",
    layer: LayerOption = 0,
    split: SplitOption = "unseen_pair",
    image: Annotated[
        Optional[str],
        typer.Option("--image", help='Pixels of one image to profile, e.g. "0 0 17 0 19 0 0 0 0 0".  '
                                     "[default: the first image (caption) of --split]", show_default=False),
    ] = None,
    as_json: JsonOption = False,
    html: HtmlOption = None,
    force: HtmlForceOption = False,
    threads: ThreadsOption = None,
) -> None:
    """Per head: each score term's share, monotonicity and slope on the pooled row, and its profile for one input."""
    from circuits.errors import CircuitsError

    if image is not None and encoder != "vision":
        raise CircuitsError("--image profiles the vision encoder; drop --image to profile a caption of --split")
    _check_inputs(ckpt, html, force, threads)
    from circuits.checkpoint import load
    from circuits.stats import input_profile, term_summary

    run = load(ckpt)
    model, world = run.model, run.task
    probe = world.probe(split, encoder)
    tokens = world.parse_image(image) if image is not None else probe.tokens[:1]
    summary = term_summary(model, probe, layer)
    profile = input_profile(model, tokens, encoder, layer, keys=world.position_labels(tokens[0], encoder))
    if html is not None:
        from circuits import viz
        from circuits.stats import term_gradient

        figures = [viz.term_grid(model, world, tokens, encoder, layer),
                   viz.term_profiles(model, world, tokens, encoder, layer),
                   viz.term_gradient_figure(term_gradient(model, probe, layer), encoder)]
        _write_figures(figures, html, f"Score terms of {ckpt}", force)
    if as_json:
        typer.echo(json.dumps({"encoder": encoder, "layer": layer, "split": split, "summary": summary,
                               "profile": profile.to_dict()}))
        return
    print_term_summary(summary, title=f"Score terms on the pooled row of the {encoder} encoder, layer {layer}, {split}")
    print_profile(profile, title=f"Pooled-row profile of {' '.join(profile.keys) if encoder == 'text' else 'image ' + world.image_text(tokens[0])}")


@app.command()
@user_errors
def ablate(
    ckpt: CheckpointOption,
    term: Annotated[
        Optional[list[str]],
        typer.Option("--term", "-t", help="Score term to zero, e.g. EP (repeatable; EP+PP also works).",
                     show_default=False),
    ] = None,
    value: Annotated[
        Optional[list[str]],
        typer.Option("--value", "-v", help="Value source to zero, e.g. P (repeatable).", show_default=False),
    ] = None,
    encoder: Annotated[
        Optional[list[str]], typer.Option("--encoder", "-e", help="Encoder(s) to patch (repeatable).  [default: vision]",
                                          show_default=False)
    ] = None,
    layer: Annotated[
        Optional[list[int]], typer.Option("--layer", "-l", help="Layer(s) to patch (repeatable).  [default: all]",
                                          show_default=False)
    ] = None,
    heads: Annotated[
        Optional[str], typer.Option("--heads", help='Heads to patch, e.g. "0,3".  [default: all]', show_default=False)
    ] = None,
    as_json: JsonOption = False,
    html: HtmlOption = None,
    force: HtmlForceOption = False,
    threads: ThreadsOption = None,
) -> None:
    """Zero-ablate score terms / value sources and compare the accuracy table before and after."""
    from circuits.errors import CircuitsError

    if not term and not value:
        raise CircuitsError("nothing to ablate: give at least one --term (e.g. EP) or --value (e.g. P)")
    heads_ = parse_heads(heads)
    _check_inputs(ckpt, html, force, threads)
    from circuits.ablate import Ablation, evaluate_ablation
    from circuits.checkpoint import load

    ablation = Ablation(
        terms=tuple(term or ()),
        values=tuple(value or ()),
        encoders=tuple(encoder or ("vision",)),
        layers=tuple(layer) if layer else None,
        heads=heads_,
    )
    run = load(ckpt)
    result = evaluate_ablation(run.model, run.task, ablation)
    if html is not None:
        from circuits import viz

        _write_figures([viz.ablation_bars(result, metrics=tuple(k for k in result["baseline"]))], html,
                       f"Ablation of {ckpt}", force)
    if as_json:
        typer.echo(ablation_json(result))
        return
    what = ", ".join([*ablation.terms, *(f"V{v}" for v in ablation.values)])
    where = f"{'+'.join(ablation.encoders)} encoder, layers {_list(ablation.layers)}, heads {_list(ablation.heads)}"
    print_ablation(result, title=f"Zero-ablating {what} ({where})")


@app.command()
@user_errors
def bias(
    ckpt: CheckpointOption,
    encoder: EncoderOption = "vision",
    layer: LayerOption = 0,
    split: SplitOption = "unseen_pair",
    as_json: JsonOption = False,
    html: HtmlOption = None,
    force: HtmlForceOption = False,
    threads: ThreadsOption = None,
) -> None:
    """Per head: how often the pooled query attends more to the left (first) or right (second) object,
    and how often that is decided by the position terms (relational) or by the labels."""
    _check_inputs(ckpt, html, force, threads)
    from circuits.checkpoint import load
    from circuits.stats import head_bias

    run = load(ckpt)
    result = head_bias(run.model, run.task.probe(split, encoder), layer)
    if html is not None:
        from circuits import viz

        _write_figures([viz.bias_bars(result), viz.bias_bars(result, argmax=True), viz.relational_bars(result)],
                       html, f"Head bias of {ckpt}", force)
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(result) | {"heads": result.rows()}))
        return
    print_bias(result)


@app.command()
@user_errors
def report(
    ckpt: Annotated[Optional[Path], typer.Option("--ckpt", help="Checkpoint directory written by `lenscli train`.", show_default=False)] = None,
    sweep: Annotated[Optional[Path], typer.Option("--sweep", help="A sweep directory instead: its figures and table.", show_default=False)] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="HTML file to write.  [default: DIR/report.html]",
                                     show_default=False)
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing report.")] = False,
    threads: ThreadsOption = None,
) -> None:
    """Write the self-contained HTML report of a checkpoint, or of a sweep (opens offline, plotly.js embedded once)."""
    if sweep is not None or ckpt is None:
        from circuits.errors import CircuitsError

        if (sweep is None) == (ckpt is None):
            raise CircuitsError("give either --ckpt DIR (a checkpoint) or --sweep OUT (a sweep directory)")
        require_free(out or sweep / "report.html", force)
        from circuits.sweep.report import write_sweep_report

        typer.echo(f"report: {write_sweep_report(sweep, out, force=force)}")
        return
    _check_inputs(ckpt, out or ckpt / "report.html", force, threads)
    from circuits.checkpoint import load
    from circuits.report import write_report

    path = write_report(load(ckpt), out or ckpt / "report.html", force=force)
    typer.echo(f"report: {path}")


@app.command()
@user_errors
def run(
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint directory, reused when it exists.")] = Path(
        "runs/default"
    ),
    config: ConfigOption = None,
    overrides: SetOption = None,
    retrain: Annotated[bool, typer.Option("--retrain", help="Train again even if --out holds the checkpoint.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    threads: ThreadsOption = None,
) -> None:
    """The main job: train the default model (or reuse its checkpoint), print the headline table
    (accuracies, per-head bias, EP / PP / BP / EP+PP / EP+PP+BP ablation) and write the HTML report."""
    cfg = training_config(config, overrides, threads)  # every check before torch is imported
    from circuits.report import headline, write_report
    from circuits.runtime import set_threads
    from circuits.train import train_or_load

    set_threads(cfg.train.threads)  # the analysis after training runs with the same threads

    run_, trained = train_or_load(cfg, out, retrain=retrain, progress=not quiet)
    typer.echo(f"{'trained' if trained else 'reusing'} checkpoint {run_.path}")
    if cfg.model.kind == "prefix_lm":  # the headline table is the CLIP's; a prefix-LM gets its accuracies and report
        from circuits.evaluation import evaluate

        print_metrics(evaluate(run_.model, run_.task), title=f"Accuracies of {run_.path}")
        typer.echo(f"report: {write_report(run_, run_.path / 'report.html', force=True)}")
        return
    numbers = headline(run_, ablation_splits=("single_object", "unseen_pair"))
    print_headline(numbers)
    report_path = write_report(run_, run_.path / "report.html", force=True, headline=numbers)
    typer.echo(f"report: {report_path}")


def _check_inputs(ckpt: Path, output: Path | None, force: bool, threads: int | None) -> None:
    """What an analysis command checks before importing torch; then pin the threads."""
    require_checkpoint(ckpt)
    if output is not None:
        require_free(output, force)
    use_threads(threads)


def _write_figures(figures: list, path: Path, title: str, force: bool) -> None:
    from circuits.report import write_figures

    typer.echo(f"figures: {write_figures(figures, path, title=title, force=force)}", err=True)


def parse_heads(text: str | None) -> tuple[int, ...] | None:
    """``"0,3"`` -> (0, 3); None -> None (all heads)."""
    from circuits.errors import CircuitsError

    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise CircuitsError(f"--heads {text!r} must be comma-separated head numbers, e.g. 0,3") from None


def ablation_json(result: dict) -> str:
    """`evaluate_ablation`'s result as strict JSON (NaN accuracies of empty splits become null)."""
    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        return None if isinstance(x, float) and math.isnan(x) else x

    return json.dumps(clean(result), allow_nan=False)


def _list(values: tuple[int, ...] | None) -> str:
    return "all" if values is None else ",".join(map(str, values))


from lenscli.analyses import register as register_analyses  # noqa: E402  (align, phases, rope, text-attention, checks)
register_analyses(app)

from lenscli import worlds  # noqa: E402  (prune, failures: App. M, P)

worlds.register(app)


def main() -> None:
    """Console-script entry point (``lenscli``)."""
    app(prog_name="lenscli")


if __name__ == "__main__":
    main()
