"""The ``lenscli`` command line: train toy CLIP models, then evaluate and dissect their checkpoints.

Commands live here; what they share (error handling, --config/--set, tables) is in
`lenscli.common`. Every user error ends as one ``error: ...`` line on stderr and exit code 2.
"""

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from lenscli.common import (
    CheckpointOption,
    ConfigOption,
    JsonOption,
    SetOption,
    load_run_config,
    metrics_json,
    print_metrics,
    user_errors,
)

app = typer.Typer(
    name="lenscli",
    help="Train toy CLIP-style models of left/right relations and inspect their checkpoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # a bug's traceback should not dump model weights
)

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
) -> None:
    """Train a model (defaults, or --config, then --set overrides) and save it as a checkpoint."""
    from circuits.checkpoint import train_to_directory
    from circuits.evaluate import evaluate

    cfg = load_run_config(config, overrides)
    model, history, path = train_to_directory(cfg, out or default_out_dir(), force=force, progress=not quiet)
    seconds = history[-1]["seconds"] if history else 0.0  # training time as logged in metrics.jsonl
    print_metrics(
        evaluate(model),
        title=f"Final accuracies after {cfg.train.steps} steps",
        extra={"train time": f"{seconds:.1f} s", "checkpoint": str(path)},
    )


@app.command("eval")
@user_errors
def eval_(ckpt: CheckpointOption, as_json: JsonOption = False) -> None:
    """Evaluate a checkpoint: retrieval accuracy on every generalization split."""
    from circuits.checkpoint import load
    from circuits.evaluate import evaluate

    metrics = evaluate(load(ckpt))
    if as_json:
        typer.echo(metrics_json(metrics))
    else:
        print_metrics(metrics, title=f"Accuracies of {ckpt}")


def main() -> None:
    """Console-script entry point (``lenscli``)."""
    app(prog_name="lenscli")


if __name__ == "__main__":
    main()
