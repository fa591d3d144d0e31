"""circuits: a mechanistic-interpretability toolkit for toy CLIP-style models of spatial relations.

Quick tour::

    import circuits
    run = circuits.train_model(circuits.RunConfig())      # a Run: .model (HookedCLIP), .task (World), .history
    circuits.evaluate(run.model, run.task)                 # the three generalization accuracies
    _, cache = run.model.vision.run_with_cache(run.task["unseen_pair"].images[:8])
    cache["pattern", 0]                                    # TransformerLens-style hooks everywhere

``circuits.train`` is the training package (``circuits.train.fit``, ``.loss``, ``.functional``,
...); the default recipe is ``circuits.train_model`` (= ``circuits.train.train``).

``import circuits`` is light: the public names below are imported from their submodules on
first use (PEP 562), so ``circuits.RunConfig`` does not import torch; ``circuits.train_model`` does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> submodule that defines it
_EXPORTS = {
    "Run": "circuits.checkpoint",
    "load": "circuits.checkpoint",
    "save": "circuits.checkpoint",
    "EncoderConfig": "circuits.config",
    "ModelConfig": "circuits.config",
    "RunConfig": "circuits.config",
    "TrainConfig": "circuits.config",
    "WorldConfig": "circuits.config",
    "Split": "circuits.data",
    "World": "circuits.data",
    "CheckpointError": "circuits.errors",
    "CircuitsError": "circuits.errors",
    "ConfigError": "circuits.errors",
    "evaluate": "circuits.evaluation",
    "similarity_matrix": "circuits.evaluation",
    "HookedCLIP": "circuits.models",
    "HookedEncoder": "circuits.models",
    "set_threads": "circuits.runtime",
    "Probe": "circuits.tasks",
    "Task": "circuits.tasks",
}
_RENAMED = {"train_model": ("circuits.train.loop", "train")}

__all__ = sorted([*_EXPORTS, *_RENAMED, "train"])

if TYPE_CHECKING:  # for type checkers and IDEs; at runtime the names come from __getattr__
    from circuits import train
    from circuits.checkpoint import Run, load, save
    from circuits.config import EncoderConfig, ModelConfig, RunConfig, TrainConfig, WorldConfig
    from circuits.data import Split, World
    from circuits.errors import CheckpointError, CircuitsError, ConfigError
    from circuits.evaluation import evaluate, similarity_matrix
    from circuits.models import HookedCLIP, HookedEncoder
    from circuits.runtime import set_threads
    from circuits.tasks import Probe, Task
    from circuits.train.loop import train as train_model


def __getattr__(name: str) -> Any:
    if name == "train":  # the subpackage
        return importlib.import_module("circuits.train")
    if name in _RENAMED:
        module, attr = _RENAMED[name]
    elif name in _EXPORTS:
        module, attr = _EXPORTS[name], name
    else:
        raise AttributeError(f"module 'circuits' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # cached: the next access does not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
