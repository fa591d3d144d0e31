"""What every lenscli command shares: user-error handling, config and checkpoint options, tables.

A new command is a few lines::

    @app.command()
    @user_errors
    def decompose(ckpt: CheckpointOption, as_json: JsonOption = False) -> None:
        from circuits.checkpoint import load   # torch/circuits imported lazily: --help stays fast
        ...

Imports of torch and circuits stay inside functions so that ``lenscli --help`` is instant.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional, ParamSpec, TypeVar

import typer

if TYPE_CHECKING:
    from circuits.config import RunConfig

USER_ERROR_EXIT = 2  # the exit code of bad user input, as click uses for usage errors

P = ParamSpec("P")
R = TypeVar("R")

# Options shared between commands (Optional[...] because typer reads these annotations at runtime).
ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", help="JSON config file; a partial one is fine (missing fields take their defaults).",
                 show_default=False),
]
SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", metavar="KEY=VALUE", show_default=False,
                 help="Override one config field after --config, e.g. --set train.steps=500 (repeatable)."),
]
CheckpointOption = Annotated[
    Path, typer.Option("--ckpt", help="Checkpoint directory written by `lenscli train`.", show_default=False)
]
ThreadsOption = Annotated[
    Optional[int],
    typer.Option("--threads", min=1, show_default=False,
                 help="CPU threads for torch, default 1 (more collapse on a busy machine); sets train.threads when training."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout instead of a table.")]

ACCURACY_LABELS = {
    "single_object": "single-object",
    "seen_pair": "seen-pair",
    "unseen_pair": "unseen-pair",
    "label_set": "label-set",
    "top1": "top-1",
    "top2": "top-2",
    "pair_identity": "pair identity",
    "3obj_top1": "3obj top-1",
    "3obj_top3_mean": "3obj top-3 mean",
    "3obj_top3_all": "3obj top-3 all",
}
COUNT_METRICS = {"3obj_top3_mean"}  # a mean count (0-3), not a fraction
# label-aware chance printed beside a metric (App. N, A10.3: order-blind ranking of the 6 pair captions)
CHANCE_OF = {"3obj_top1": ("top1", 3, 6), "3obj_top3_mean": ("top_k_mean", 3, 6), "3obj_top3_all": ("top_k_all", 3, 6)}


@contextmanager
def handle_user_errors() -> Iterator[None]:
    """Report a `CircuitsError` as one line ``error: <message>`` on stderr and exit with code 2.

    Anything else is a bug and keeps its traceback.
    """
    try:
        yield
    except Exception as e:
        from circuits.errors import CircuitsError

        if not isinstance(e, CircuitsError):
            raise
        message = getattr(e, "cli_message", None) or str(e)  # the CLI's words (--force) where they differ
        typer.echo(f"error: {' '.join(message.split())}", err=True)
        raise typer.Exit(USER_ERROR_EXIT) from None


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of `handle_user_errors` for command functions (put it under ``@app.command()``)."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with handle_user_errors():
            return command(*args, **kwargs)

    return wrapper


def load_run_config(config: Path | None, overrides: list[str] | None) -> RunConfig:
    """Defaults, or the `config` JSON file, then the ``--set key=value`` `overrides` in order."""
    from circuits.config import RunConfig, load_config_file

    cfg = load_config_file(str(config)) if config is not None else RunConfig()
    return cfg.with_overrides(overrides) if overrides else cfg


def use_threads(threads: int | None) -> None:
    """Pin torch to `threads` CPU threads (None: the default, `circuits.runtime.DEFAULT_THREADS`)
    for an analysis command. Imports torch: call it after the arguments are checked."""
    from circuits.runtime import DEFAULT_THREADS, set_threads

    set_threads(DEFAULT_THREADS if threads is None else threads)


def training_config(config: Path | None, overrides: list[str] | None, threads: int | None) -> RunConfig:
    """The run config of a training command, checked before any heavy import: `load_run_config`
    with ``--threads`` as ``train.threads``, then `circuits.runtime.preflight` (size, step count,
    device); only the device check imports torch."""
    from circuits.runtime import preflight

    cfg = load_run_config(config, overrides)
    if threads is not None:
        cfg = cfg.with_overrides({"train.threads": threads})
    estimate = preflight(cfg)
    if estimate.train_hours > 1:
        typer.echo(f"warning: {cfg.train.steps:,} steps will take about {estimate.train_hours:,.1f} hours"
                   " on one CPU thread", err=True)
    return cfg


def require_checkpoint(ckpt: Path) -> None:
    """Fail fast, before torch is imported, on a --ckpt that cannot be a checkpoint."""
    from circuits.errors import CheckpointError

    if not ckpt.exists():
        raise CheckpointError(f"checkpoint {ckpt} does not exist")
    if not ckpt.is_dir():
        raise CheckpointError(f"checkpoint {ckpt} is not a directory")
    if not (ckpt / "config.json").is_file():
        raise CheckpointError(f"{ckpt / 'config.json'} is missing; is {ckpt} a checkpoint directory?")


KIND_NAMES = {"clip": "a CLIP (model.kind='clip')", "prefix_lm": "a prefix-LM toy VLM (model.kind='prefix_lm')"}
KIND_HINTS = {"clip": "; on a prefix-LM use lenscli vlm norms|permute|entropy, or decompose / bias / ablate --encoder decoder",
              "prefix_lm": ""}


def require_kind(ckpt: Path, kind: str, command: str) -> None:
    """Refuse, in one line, a checkpoint of the wrong model family for `command` (read from its
    config.json, before the model is built)."""
    from circuits.checkpoint import read_config
    from circuits.errors import CircuitsError

    require_checkpoint(ckpt)
    found = read_config(ckpt).model.kind
    if found != kind:
        raise CircuitsError(f"lenscli {command} needs {KIND_NAMES[kind]} checkpoint; {ckpt} is"
                            f" {KIND_NAMES.get(found, repr(found))}{KIND_HINTS[kind]}")


def require_free(path: Path, force: bool) -> None:
    """Refuse an existing output file without --force (the library's own check speaks Python)."""
    from circuits.errors import CircuitsError

    if (path.exists() or path.is_symlink()) and not force:
        raise CircuitsError(f"{path} exists; pass --force to overwrite it or choose another path")


def print_metrics(metrics: Mapping[str, float], *, title: str, extra: Mapping[str, str] | None = None) -> None:
    """A table of the accuracies in `metrics` (as percentages), then the `extra` rows as given."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    chance = any(key in metrics for key in CHANCE_OF)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    if chance:
        from circuits.data.retrieval import label_aware_chance

        table.add_column("label-aware chance", justify="right")
    labels = {**ACCURACY_LABELS, **{key: key for key in metrics if key not in ACCURACY_LABELS}}  # a task's own metrics as named
    for key, label in labels.items():
        if key in metrics:
            fmt = "{:.2f}" if key in COUNT_METRICS else "{:.1%}"
            value = metrics[key]
            row = [label, "n/a" if math.isnan(value) else fmt.format(value)]
            if chance:
                kind, n_true, n = CHANCE_OF.get(key, (None, 0, 0))
                row.append(fmt.format(label_aware_chance(n_true, n)[kind]) if kind else "")
            table.add_row(*row)
    if extra:
        table.add_section()
        for label, text in extra.items():
            table.add_row(label, text, *([""] if chance else []))
    console = Console()
    console.print(Text(title, style="bold"))  # above the table, not its title: a long path would wrap
    console.print(table)


def metrics_json(metrics: Mapping[str, float]) -> str:
    """`metrics` as strict JSON (an empty split's NaN accuracy becomes null)."""
    return json.dumps({k: None if math.isnan(v) else v for k, v in metrics.items()}, allow_nan=False)
