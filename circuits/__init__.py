"""circuits: a mechanistic-interpretability toolkit for toy CLIP-style models of spatial relations.

Quick tour::

    import circuits
    result = circuits.train_model(circuits.RunConfig())   # a trained HookedCLIP, in about a minute on CPU
    model = result.model
    circuits.evaluate(model)                               # the three generalization accuracies
    _, cache = model.vision.run_with_cache(model.world["unseen_pair"].images[:8])
    cache["pattern", 0]                                    # TransformerLens-style hooks everywhere

``circuits.train`` is the training package (``circuits.train.fit``, ``.loss``, ``.functional``,
...); the default recipe is ``circuits.train_model`` (= ``circuits.train.train``).
"""

from circuits.checkpoint import load, save
from circuits.config import EncoderConfig, ModelConfig, RunConfig, TrainConfig, WorldConfig
from circuits.data import Split, World
from circuits.errors import CheckpointError, CircuitsError, ConfigError
from circuits.evaluate import evaluate, similarity_matrix
from circuits.models import HookedCLIP, HookedEncoder
from circuits import train  # the package (not shadowed by the recipe function)
from circuits.train.loop import train as train_model

__all__ = [
    "CheckpointError",
    "CircuitsError",
    "ConfigError",
    "EncoderConfig",
    "HookedCLIP",
    "HookedEncoder",
    "ModelConfig",
    "RunConfig",
    "Split",
    "TrainConfig",
    "World",
    "WorldConfig",
    "evaluate",
    "load",
    "save",
    "similarity_matrix",
    "train",
    "train_model",
]
