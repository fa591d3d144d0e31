"""circuits: a mechanistic-interpretability toolkit for toy CLIP-style models of spatial relations.

Quick tour::

    import circuits
    result = circuits.train(circuits.RunConfig())         # a trained HookedCLIP, in about a minute on CPU
    model = result.model
    circuits.evaluate(model)                               # the three generalization accuracies
    _, cache = model.vision.run_with_cache(model.world["unseen_pair"].images[:8])
    cache["pattern", 0]                                    # TransformerLens-style hooks everywhere

``import circuits`` is light: the public names below are imported from their submodules on
first use (PEP 562), so ``circuits.RunConfig`` does not import torch; ``circuits.train`` does.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

# public name -> submodule that defines it
_EXPORTS = {
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
    "evaluate": "circuits.evaluate",
    "similarity_matrix": "circuits.evaluate",
    "HookedCLIP": "circuits.models",
    "HookedEncoder": "circuits.models",
    "set_threads": "circuits.runtime",
    "train": "circuits.train",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs; at runtime the names come from __getattr__
    from circuits.checkpoint import load, save
    from circuits.config import EncoderConfig, ModelConfig, RunConfig, TrainConfig, WorldConfig
    from circuits.data import Split, World
    from circuits.errors import CheckpointError, CircuitsError, ConfigError
    from circuits.evaluate import evaluate, similarity_matrix
    from circuits.models import HookedCLIP, HookedEncoder
    from circuits.runtime import set_threads
    from circuits.train import train


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'circuits' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cached: the next access does not come here
    return value


class _Package(types.ModuleType):
    """`circuits.train` is both a subpackage and the function it exports. Importing the
    subpackage (``import circuits.train.loop``) would bind the module as the attribute; the
    attribute stays the function (the subpackage is still importable through sys.modules)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "train" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
