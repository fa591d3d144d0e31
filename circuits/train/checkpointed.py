"""Training straight into a checkpoint directory, and reusing one that is already there."""

from __future__ import annotations

from typing import Callable

from circuits.atomic import atomic_directory
from circuits.checkpoint import CONFIG, METRICS, PathLike, Run, load, read_config, target_path, write_model
from circuits.config import RunConfig
from circuits.errors import CheckpointError
from circuits.train.loop import train


def train_to_directory(
    cfg: RunConfig, out: PathLike, *, force: bool = False, progress: bool = True, on_eval: Callable[[dict], None] | None = None
) -> Run:
    """Train a model as `cfg` says and save it as a checkpoint at `out`.

    The output location is checked before training starts, so a run is never thrown away at the
    end for want of a place to put it; metrics rows are streamed to the checkpoint's
    ``metrics.jsonl`` (inside the not yet visible temporary directory) as they are computed
    and passed to ``on_eval`` (an exception there abandons the run; nothing is left at `out`).
    """
    target = target_path(out)
    with atomic_directory(target, force=force) as tmp:
        (tmp / METRICS).touch()
        run = train(cfg, progress=progress, metrics_path=tmp / METRICS, on_eval=on_eval)
        write_model(cfg, run.model, tmp)
    run.path = target
    return run


def train_or_load(cfg: RunConfig, directory: PathLike, *, retrain: bool = False, progress: bool = True) -> tuple[Run, bool]:
    """The checkpoint of `cfg` at `directory`: loaded if it is already there, trained otherwise.

    Returns ``(run, trained)``. A checkpoint there that was trained with a different config is
    an error (one line), never silently reused or replaced; ``retrain`` replaces it (only if it
    is a checkpoint).
    """
    target = target_path(directory)
    if not retrain and (target / CONFIG).is_file():
        if _without_threads(read_config(target)) != _without_threads(cfg):  # threads change the speed, not the model
            raise CheckpointError(
                f"{target} holds a checkpoint trained with a different config; use another directory or retrain=True",
                cli=f"{target} holds a checkpoint trained with a different config; use another --out or --retrain",
            )
        return load(target), False
    return train_to_directory(cfg, target, force=retrain, progress=progress), True


def _without_threads(cfg: RunConfig) -> dict:
    data = cfg.to_dict()
    data["train"].pop("threads", None)
    return data
