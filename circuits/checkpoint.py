"""Checkpoints: a directory holding a model, the config that built it and its training metrics.

::

    run/config.json        RunConfig.to_json() (format_version, world, model, train)
    run/model.safetensors  the HookedCLIP state dict (safetensors: no pickle, safe to share)
    run/metrics.jsonl      one JSON object per evaluation during training (may be empty)

Writing is atomic: everything goes into a fresh hidden sibling directory that is renamed into
place at the end, so an interrupted run leaves either the old checkpoint or the new one, never
half of one. Loading never unpickles and reports every problem as a one-line `CheckpointError`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError

from circuits.atomic import _swap, atomic_directory, check_target, sibling
from circuits.config import RunConfig
from circuits.errors import CheckpointError, ConfigError
from circuits.models import HookedCLIP
from circuits.train.loop import Metrics, resolve_device, train

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
METRICS = "metrics.jsonl"

PathLike = str | os.PathLike[str]


def save(model: HookedCLIP, directory: PathLike, history: list[Metrics] | None = None, *, force: bool = False) -> Path:
    """Write `model` (and its metrics `history`) as a checkpoint directory; return its path.

    Refuses to replace a non-empty directory unless ``force``; an empty one is reused.
    """
    target = _target(directory)
    with _atomic_directory(target, force=force) as tmp:
        _write_model(model, tmp)
        with open(tmp / METRICS, "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in history or [])
    return target


def train_to_directory(
    cfg: RunConfig, out: PathLike, *, force: bool = False, progress: bool = True
) -> tuple[HookedCLIP, list[Metrics], Path]:
    """Train a model as `cfg` says and save it as a checkpoint at `out`.

    The output location is checked before training starts, so a run is never thrown away at the
    end for want of a place to put it; metrics rows are streamed to the checkpoint's
    ``metrics.jsonl`` (inside the not yet visible temporary directory) as they are computed.
    """
    target = _target(out)
    with _atomic_directory(target, force=force) as tmp:
        (tmp / METRICS).touch()
        result = train(cfg, progress=progress, metrics_path=tmp / METRICS)
        _write_model(result.model, tmp)
    return result.model, result.history, target


def train_or_load(
    cfg: RunConfig, directory: PathLike, *, retrain: bool = False, progress: bool = True
) -> tuple[HookedCLIP, list[Metrics], Path, bool]:
    """The checkpoint of `cfg` at `directory`: loaded if it is already there, trained otherwise.

    Returns ``(model, history, path, trained)``. A checkpoint there that was trained with a
    different config is an error (one line), never silently reused or replaced; ``retrain``
    replaces it (only if it is a checkpoint).
    """
    target = _target(directory)
    if not retrain and (target / CONFIG).is_file():
        found = _read_config(target)
        if _without_threads(found) != _without_threads(cfg):  # threads change the speed, not the model
            raise CheckpointError(
                f"{target} holds a checkpoint trained with a different config; use another directory or retrain=True",
                cli=f"{target} holds a checkpoint trained with a different config; use another --out or --retrain",
            )
        return load(target), read_metrics(target), target, False
    model, history, path = train_to_directory(cfg, target, force=retrain, progress=progress)
    return model, history, path, True


def _without_threads(cfg: RunConfig) -> dict:
    data = cfg.to_dict()
    data["train"].pop("threads", None)
    return data


def load(directory: PathLike, device: str | torch.device | None = None) -> HookedCLIP:
    """The model saved in checkpoint `directory`, in eval mode, on `device` (None = cpu, "auto" = cuda if available)."""
    path = _checkpoint_dir(directory)
    cfg = _read_config(path)
    state = _read_weights(path / WEIGHTS)
    model = HookedCLIP(cfg)
    _check_state_dict(state, model.state_dict(), path)
    model.load_state_dict(state, strict=True)
    model.eval()
    return model.to(_device(device))


def read_metrics(directory: PathLike) -> list[Metrics]:
    """The evaluation rows of checkpoint `directory`, in training order."""
    file = _checkpoint_dir(directory) / METRICS
    try:
        lines = file.read_text().splitlines()
    except FileNotFoundError:
        raise CheckpointError(f"{file} is missing; is {directory} a checkpoint directory?") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {file}: {e.strerror}") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{file} line {number} is not valid JSON: {e}") from None
        if not isinstance(row, dict):
            raise CheckpointError(f"{file} line {number} is not a JSON object")
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------ writing
def _write_model(model: HookedCLIP, directory: Path) -> None:
    """config.json and model.safetensors of `model` into `directory`."""
    (directory / CONFIG).write_text(model.cfg.to_json() + "\n")
    state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    # bytes written by us rather than save_file, which creates the file readable by its owner only
    (directory / WEIGHTS).write_bytes(safetensors.torch.save(state, metadata={"format": "pt"}))


def _target(directory: PathLike) -> Path:
    """Absolute, normalised (``.`` and ``..`` removed, symlinks kept) form of a checkpoint path.

    Taken once, up front: replacing the current directory would leave a relative path dangling.
    """
    return Path(os.path.abspath(directory))


# locking, the temporary sibling, SIGTERM and stale leftovers: circuits.atomic (no torch there)
_check_target, _sibling, _atomic_directory, _swap = check_target, sibling, atomic_directory, _swap


# ------------------------------------------------------------------------------------ reading
def _checkpoint_dir(directory: PathLike) -> Path:
    path = Path(directory)
    if not path.exists():
        raise CheckpointError(f"checkpoint {directory} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {directory} is not a directory")
    return path


def _read_config(path: Path) -> RunConfig:
    file = path / CONFIG
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{file} is missing; is {path} a checkpoint directory?") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {file}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{file} must hold a JSON object")
    try:
        return RunConfig.from_dict(data)
    except ConfigError as e:
        raise CheckpointError(f"{file} holds an invalid config: {e}") from None


def _read_weights(file: Path) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(str(file))
    except FileNotFoundError:
        raise CheckpointError(f"{file} is missing") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {file}: {e.strerror}") from None
    except SafetensorError as e:
        raise CheckpointError(f"{file} is not a valid safetensors file ({e})") from None


def _check_state_dict(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path) -> None:
    """Name the first tensor that is missing, unexpected or of the wrong shape for the config."""
    where = f"{path / WEIGHTS} does not match {path / CONFIG}"
    for name, want in expected.items():
        if name not in found:
            raise CheckpointError(f"{where}: tensor {name} is missing")
        if found[name].shape != want.shape:
            raise CheckpointError(
                f"{where}: {name} has shape {tuple(found[name].shape)}, the config needs {tuple(want.shape)}"
            )
    extra = sorted(set(found) - set(expected))
    if extra:
        raise CheckpointError(f"{where}: unexpected tensor {extra[0]}" + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cpu")
    if isinstance(device, torch.device):
        return device
    try:
        resolved = resolve_device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}: use 'cpu', 'cuda[:N]', 'mps' or 'auto'") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return resolved
