"""Checkpoints: a directory holding a model, the config that built it and its training metrics.

::

    run/config.json        RunConfig.to_json() (format_version, world = the task, model, train)
    run/model.safetensors  the model state dict, HookedCLIP or HookedPrefixLM by model.kind
                           (safetensors: no pickle, safe to share)
    run/metrics.jsonl      one JSON object per evaluation during training (may be empty)
    run/vision_encoder.json  prefix-LMs with a ``clip_*`` vision source only: the frozen CLIP
                           encoder's source directory, sizes, [CLS] id and CLIP config; its
                           weights are in model.safetensors (``vision.encoder.*``), so the
                           checkpoint loads even after the CLIP checkpoint moved or was deleted

Writing is atomic: everything goes into a fresh hidden sibling directory that is renamed into
place at the end, so an interrupted run leaves either the old checkpoint or the new one, never
half of one. Loading never unpickles and reports every problem as a one-line `CheckpointError`;
it rebuilds the task from the saved config and returns a `Run` (config, model, task, metrics).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError

from circuits.atomic import atomic_directory  # the lock, temporary sibling, SIGTERM and stale leftovers
from circuits.config import RunConfig
from circuits.errors import CheckpointError, ConfigError
from circuits.data.vocab import Vocab
from circuits.models import HookedCLIP, HookedPrefixLM, HookedVisionEncoder, VisionEncoderSource, build_model
from circuits.tasks import Task, build_task

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
METRICS = "metrics.jsonl"
VISION_ENCODER = "vision_encoder.json"

PathLike = str | os.PathLike[str]
Metrics = dict[str, float]


@dataclass
class Run:
    """A trained model with everything that belongs to it: the config that made it, the task
    it was trained on (rebuilt from the config), its metrics history and where it is saved."""

    cfg: RunConfig
    model: HookedCLIP | HookedPrefixLM
    task: Task
    history: list[Metrics] = field(default_factory=list)  # one row per evaluation during training
    path: Path | None = None
    seconds: float = 0.0  # training time, when this run was just trained

    @property
    def final(self) -> Metrics:
        return self.history[-1] if self.history else {}


def resolve_device(name: str) -> torch.device:
    """``"auto"``: cuda when available, else cpu; anything else as torch reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def save(run: Run, directory: PathLike, *, force: bool = False) -> Path:
    """Write ``run`` (config, weights, metrics history) as a checkpoint directory; return its path.

    Refuses to replace a non-empty directory unless ``force``; an empty one is reused.
    """
    target = target_path(directory)
    with atomic_directory(target, force=force) as tmp:
        write_model(run.cfg, run.model, tmp)
        with open(tmp / METRICS, "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in run.history)
    return target


def load(directory: PathLike, device: str | torch.device | None = None) -> Run:
    """The `Run` saved in checkpoint `directory`: its model in eval mode on `device` (None = cpu,
    "auto" = cuda if available), the task rebuilt from its config, and its metrics."""
    path = _checkpoint_dir(directory)
    cfg = _read_config(path)
    state = _read_weights(path / WEIGHTS)
    task = build_task(cfg)
    model = build_model(cfg, task, _stored_vision_encoder(cfg, path))
    _check_state_dict(state, model.state_dict(), path)
    model.load_state_dict(state, strict=True)
    model.eval()
    return Run(cfg, model.to(_device(device)), task, read_metrics(path), target_path(path))


def read_config(directory: PathLike) -> RunConfig:
    """The `RunConfig` saved in checkpoint `directory` (one-line `CheckpointError` if unreadable)."""
    return _read_config(_checkpoint_dir(directory))


def read_metrics(path: PathLike) -> list[Metrics]:
    """The evaluation rows of checkpoint directory `path` (or of a ``metrics.jsonl`` file), in
    training order."""
    if not Path(path).exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    file = Path(path) / METRICS if Path(path).is_dir() else Path(path)
    try:
        lines = file.read_text().splitlines()
    except FileNotFoundError:
        raise CheckpointError(f"{file} is missing; is {path} a checkpoint directory?") from None
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


def new_model(cfg: RunConfig, task: Task) -> HookedCLIP | HookedPrefixLM:
    """`build_model` for a fresh run: a prefix-LM with a ``clip_*`` vision source gets the frozen
    vision encoder of ``model.decoder.vision_checkpoint`` (`load_vision_encoder`)."""
    d = cfg.model.decoder
    vision = load_vision_encoder(d.vision_checkpoint) if cfg.model.kind == "prefix_lm" and d.vision_source != "frozen_random" else None
    return build_model(cfg, task, vision)


def load_vision_encoder(directory: PathLike) -> VisionEncoderSource:
    """The vision encoder of the CLIP checkpoint at `directory` (loaded with `load`), with its
    [CLS] id, absolute path and config: the source of ``vision_source="clip_tokens"`` ([B] B0, B6)."""
    run = load(directory)
    if run.cfg.model.kind != "clip":
        raise CheckpointError(f"model.decoder.vision_checkpoint {directory} is a {run.cfg.model.kind!r} checkpoint;"
                              " the vision tokens come from a CLIP's vision encoder (model.kind='clip')")
    return VisionEncoderSource(run.model.vision, Vocab(run.cfg.world.n_labels).cls, str(target_path(directory)),
                               run.cfg.to_dict())


def _stored_vision_encoder(cfg: RunConfig, path: Path) -> VisionEncoderSource | None:
    """The frozen CLIP encoder saved inside a prefix-LM checkpoint (architecture from
    ``vision_encoder.json``; its weights come with the model's state dict)."""
    if cfg.model.kind != "prefix_lm" or cfg.model.decoder.vision_source == "frozen_random":
        return None
    file = path / VISION_ENCODER
    try:
        meta = json.loads(file.read_text())
        clip_cfg = RunConfig.from_dict(meta["clip_config"])
        encoder = HookedVisionEncoder(clip_cfg.model.vision, int(meta["d_vocab"]), int(meta["n_ctx"]))
        return VisionEncoderSource(encoder, int(meta["cls_token"]), str(meta.get("source", "")), meta["clip_config"])
    except FileNotFoundError:
        raise CheckpointError(f"{file} is missing: a prefix-LM with vision_source="
                              f"{cfg.model.decoder.vision_source!r} stores its frozen CLIP encoder's description there") from None
    except (OSError, ValueError, KeyError, TypeError, ConfigError) as e:
        raise CheckpointError(f"{file} is not a valid vision-encoder description: {e}") from None


# ------------------------------------------------------------------------------------ writing
def write_model(cfg: RunConfig, model: HookedCLIP | HookedPrefixLM, directory: Path) -> None:
    """config.json and model.safetensors of `model` into `directory` (an open atomic directory),
    and vision_encoder.json for a prefix-LM reading a frozen CLIP encoder."""
    (directory / CONFIG).write_text(cfg.to_json() + "\n")
    meta = getattr(model, "vision_source_meta", None)
    if meta is not None:
        (directory / VISION_ENCODER).write_text(json.dumps(meta, indent=1) + "\n")
    state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    # bytes written by us rather than save_file, which creates the file readable by its owner only
    (directory / WEIGHTS).write_bytes(safetensors.torch.save(state, metadata={"format": "pt"}))


def target_path(directory: PathLike) -> Path:
    """Absolute, normalised (``.`` and ``..`` removed, symlinks kept) form of a checkpoint path.

    Taken once, up front: replacing the current directory would leave a relative path dangling.
    """
    return Path(os.path.abspath(directory))


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
