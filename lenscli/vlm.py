"""``lenscli vlm ...``: the diagnostics of "Beyond Semantics" ([B]) on a prefix-LM checkpoint
(``lenscli train --set model.kind=prefix_lm``): norms (B1), permutation test (B3), attention
entropy (B9). Thin: each command loads the checkpoint and prints one `circuits.spatial` result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lenscli.common import CheckpointOption, JsonOption, ThreadsOption, require_kind, use_threads, user_errors

app = typer.Typer(name="vlm", help="Diagnostics of 'Beyond Semantics' on prefix-LM (toy VLM) checkpoints.",
                  no_args_is_help=True)

SplitOption = Annotated[str, typer.Option("--split", help="Split to measure on.")]


def _load_vlm(ckpt: Path, threads: int | None, command: str):
    require_kind(ckpt, "prefix_lm", f"vlm {command}")
    use_threads(threads)
    from circuits.checkpoint import load

    return load(ckpt)


def _print(title: str, rows: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    keys = sorted({k for row in rows.values() for k in row})
    table.add_column("")
    for k in keys:
        table.add_column(k, justify="right")
    for name, row in rows.items():
        table.add_row(name, *(f"{row[k]:.3f}" if isinstance(row.get(k), float) else str(row.get(k, "")) for k in keys))
    Console().print(table)


@app.command()
@user_errors
def norms(ckpt: CheckpointOption, split: SplitOption = "unseen_pair", as_json: JsonOption = False,
          threads: ThreadsOption = None) -> None:
    """[B] Fig. 3: L2 norms of the vision tokens, text embeddings and positions, and their ratios."""
    from circuits.spatial.norms import embedding_norms

    run = _load_vlm(ckpt, threads, "norms")
    _print(f"Embedding norms of {ckpt} on {split}", embedding_norms(run.model, run.task, split), as_json)


@app.command()
@user_errors
def permute(ckpt: CheckpointOption, n: Annotated[int, typer.Option("--n", help="Random permutations.")] = 20,
            as_json: JsonOption = False, threads: ThreadsOption = None) -> None:
    """[B] Table 1: accuracy with the vision tokens randomly permuted / reversed, and our PSI."""
    from circuits.errors import CircuitsError
    from circuits.spatial.permutation import permutation_test

    if n < 1:
        raise CircuitsError(f"--n must be >= 1 (got {n})")
    run = _load_vlm(ckpt, threads, "permute")
    _print(f"Permutation test of {ckpt}", permutation_test(run.model, run.task, n_permutations=n), as_json)


@app.command()
@user_errors
def entropy(ckpt: CheckpointOption, split: SplitOption = "unseen_pair", as_json: JsonOption = False,
            threads: ThreadsOption = None) -> None:
    """[B] Table 4: normalised entropy of the text tokens' attention over the vision tokens."""
    from circuits.spatial.entropy import model_vision_entropy

    run = _load_vlm(ckpt, threads, "entropy")
    out = model_vision_entropy(run.model, run.task, split)
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo(f"vision-attention entropy (Table 4 aggregation) on {split}: {out['table4']:.3f}")
    typer.echo("per text query ([BOS], w1, w2, w3): " + ", ".join(f"{v:.3f}" for v in out["per_query"]))
