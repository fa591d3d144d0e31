"""circuits: a mechanistic-interpretability toolkit for toy CLIP-style models of spatial relations.

Quick tour::

    import circuits
    run = circuits.train_model(circuits.RunConfig())      # a Run: .model (HookedCLIP), .task (World), .history
    circuits.evaluate(run.model, run.task)                 # the three generalization accuracies
    _, cache = run.model.vision.run_with_cache(run.task["unseen_pair"].images[:8])
    cache["pattern", 0]                                    # TransformerLens-style hooks everywhere

``circuits.train`` is the training package (``circuits.train.fit``, ``.loss``, ``.functional``,
...); the default recipe is ``circuits.train_model`` (= ``circuits.train.train``).
"""

from circuits.checkpoint import Run, load, save
from circuits.config import EncoderConfig, ModelConfig, RunConfig, TrainConfig, WorldConfig
from circuits.data import Split, World
from circuits.tasks import Probe, Task
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
    "Probe",
    "Run",
    "RunConfig",
    "Split",
    "Task",
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
