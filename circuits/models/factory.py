"""The one place a `RunConfig` picks its model family: ``model.kind``."""

from __future__ import annotations

from torch import nn

from circuits.config import RunConfig
from circuits.errors import ConfigError
from circuits.models.clip import HookedCLIP
from circuits.models.vision_source import VisionEncoderSource
from circuits.models.vlm import HookedPrefixLM
from circuits.tasks import Task

MODEL_KINDS = {"clip": HookedCLIP, "prefix_lm": HookedPrefixLM}


def build_model(cfg: RunConfig, task: Task, vision: VisionEncoderSource | None = None) -> nn.Module:
    """The model ``cfg.model.kind`` names, sized for ``task``, initialised from ``cfg.train.seed``.
    ``vision``: the frozen CLIP vision encoder of a prefix-LM with a ``clip_*`` vision source
    (`circuits.checkpoint.new_model` loads it from ``model.decoder.vision_checkpoint``)."""
    if cfg.model.kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model.kind {cfg.model.kind!r}; kinds are {', '.join(MODEL_KINDS)}")
    if cfg.model.kind == "prefix_lm":
        return HookedPrefixLM.for_task(cfg, task, vision)
    if vision is not None:
        raise ConfigError("a vision encoder source only applies to model.kind='prefix_lm'")
    return MODEL_KINDS[cfg.model.kind].for_task(cfg, task)
