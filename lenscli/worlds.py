"""``lenscli prune | failures``: the paper's other regimes (App. M, P), thin over `circuits.prune`
and `circuits.failures`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from lenscli.common import CheckpointOption, JsonOption, ThreadsOption, require_kind, use_threads, user_errors


def _parse_keep(text: str) -> tuple[int, ...]:
    from circuits.errors import CircuitsError

    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise CircuitsError(f"--keep {text!r} must be comma-separated head numbers, e.g. 0,2") from None


@user_errors
def prune(
    ckpt: CheckpointOption,
    keep: Annotated[str, typer.Option("--keep", help='Heads to keep, e.g. "0,2".', show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint directory for the pruned model.", show_default=False)],
    steps: Annotated[Optional[int], typer.Option("--steps", help="Continued-training steps.  [default: the run's train.steps]",
                                                 show_default=False)] = None,
    layer: Annotated[int, typer.Option("--layer", "-l", help="Vision attention layer to prune.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing checkpoint at --out.")] = False,
    as_json: JsonOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    threads: ThreadsOption = None,
) -> None:
    """Keep some vision heads (App. P), evaluate, continue training with a fresh optimiser, save."""
    from circuits.errors import CircuitsError

    heads = _parse_keep(keep)
    require_kind(ckpt, "clip", "prune")
    if steps is not None and steps < 0:
        raise CircuitsError(f"--steps must be >= 0 (got {steps})")
    if (out.exists() and any(out.iterdir()) if out.is_dir() else out.exists()) and not force:
        raise CircuitsError(f"{out} exists; pass --force to overwrite it or choose another path")
    use_threads(threads)
    from circuits.checkpoint import load
    from circuits.prune import Pruning, check_pruning, prune_and_retrain, save_pruned

    run = load(ckpt)
    check_pruning(run.model, Pruning(heads, layer))  # bad --keep fails before any training
    result = prune_and_retrain(run, heads, layer=layer, steps=steps, progress=not quiet and not as_json)
    save_pruned(result, out, force=force, source=str(ckpt))
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    from lenscli.tables import print_ablation

    kept = ",".join(map(str, result.pruning.keep))
    print_ablation({"baseline": result.before, "ablated": result.after},
                   title=f"Vision layer {result.pruning.layer} pruned to heads {kept}: right after pruning, then after"
                         f" {result.steps} steps of continued training (saved to {out})")


@user_errors
def failures(
    ckpt: CheckpointOption,
    term: Annotated[Optional[list[str]], typer.Option("--term", "-t", help="Score term to zero first, e.g. EP (repeatable).",
                                                      show_default=False)] = None,
    split: Annotated[str, typer.Option("--split", help="Two-object split: unseen_pair or seen_pair.")] = "unseen_pair",
    as_json: JsonOption = False,
    threads: ThreadsOption = None,
) -> None:
    """Classify the bidirectional-caption failures (App. M, Table 3), optionally under an ablation."""
    require_kind(ckpt, "clip", "failures")
    use_threads(threads)
    from circuits.ablate import Ablation
    from circuits.checkpoint import load
    from circuits.failures import failure_analysis

    run = load(ckpt)
    result = failure_analysis(run.model, run.task, Ablation(terms=tuple(term)) if term else None, split)
    if as_json:
        typer.echo(json.dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Failures on {split}" + (f" with {'+'.join(term)} ablated" if term else ""))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("strict", "relaxed", "pair_identity", "wrong_ordering_share", "one_true_share", "wrong_label_share",
                "wrong_ordering_random"):
        table.add_row(key.replace("_", " "), f"{result[key]:.1%}")
    table.add_row("failures", f"{sum(result[k] for k in result if k.startswith('n_') and k != 'n_correct'):.0f}")
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command()(prune)
    app.command()(failures)
