"""The task interface: data, metrics and statistic positions, held apart from models.

A model is built from sizes (vocabulary, context length), never from a dataset; a task says
which sizes it needs. Everything an analysis needs to know about the data comes from the task:

* ``split_names`` / ``eval_splits``: its splits, and the ones reported as generalization metrics;
* ``model_sizes()``: keyword arguments for the model constructor (vocabularies, context lengths);
* ``evaluate(model, splits, pooled_only)``: one number per metric (the task's metric functions);
* ``probe(split, encoder)``: a `Probe`, the inputs and positions that head statistics read;
* ``position_labels(tokens, encoder)``: a name per position of one input, for tables and figures.

`circuits.data.World` implements it for the CLIP spatial-relation worlds; ``examples/`` has a
task written from scratch. Tasks sit below models in the layering: they call a model only
through its public methods (duck typing), never import one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from jaxtyping import Int
from torch import Tensor


@dataclass(frozen=True)
class Probe:
    """Inputs with two marked objects, and the positions statistics need (Sec. 4-6).

    ``first``/``second`` are key positions of the two objects of each input (the left and right
    object of an image; subject and object of a caption), ``columns`` the horizontal
    coordinate of every key position (-1 where a position is not spatial, e.g. [CLS]), and
    ``query`` the query row the statistics read (None: the encoder's pooled position).
    """

    tokens: Int[Tensor, "n pos"]
    first: Int[Tensor, " n"]
    second: Int[Tensor, " n"]
    columns: Int[Tensor, " pos"]
    encoder: str = "vision"  # which encoder of a pair reads these tokens
    query: int | None = None
    split: str = ""
    names: tuple[str, str] = ("first", "second")  # what the first and second object are called
    rows: Int[Tensor, " pos"] | None = None  # vertical coordinate of each key position (2D grids)

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def subset(self, index: Tensor | slice) -> Probe:
        return replace(self, tokens=self.tokens[index], first=self.first[index], second=self.second[index])


@runtime_checkable
class Task(Protocol):
    """What a study's data is; see the module docstring."""

    split_names: tuple[str, ...]
    eval_splits: tuple[str, ...]

    def model_sizes(self) -> dict[str, int]: ...

    def evaluate(self, model: Any, splits: tuple[str, ...] | None = None, pooled_only: bool = True) -> dict[str, float]: ...

    def probe(self, split: str, encoder: str = "vision") -> Probe: ...

    def position_labels(self, tokens: Int[Tensor, " pos"], encoder: str = "vision") -> list[str]: ...


def build_task(cfg: Any) -> Task:
    """The task a `RunConfig` describes: for ``task="relations"`` the spatial-relation `World` of
    ``cfg.world``, read by retrieval (``model.kind="clip"``) or captioned (``"prefix_lm"``,
    `CaptionTask`); for ``task="toy2ds"`` the questions of ``cfg.toy2ds`` (`Toy2DSTask`)."""
    from circuits.data.world import World
    from circuits.tasks.captioning import CaptionTask

    if getattr(cfg, "task", "relations") == "toy2ds":
        from circuits.tasks.toy2ds import Toy2DSTask

        return Toy2DSTask(cfg.toy2ds, cfg.model.decoder.pool_tokens)
    world = World(cfg.world)
    return CaptionTask(world, cfg.model.decoder.pool_tokens, cfg.model.decoder.caption_order) if cfg.model.kind == "prefix_lm" else world


def check_split(task: Task, split: str) -> str:
    """``split`` if the task has it, else a one-line `CircuitsError` listing the splits."""
    from circuits.errors import CircuitsError

    if split not in task.split_names:
        raise CircuitsError(f"unknown split {split!r}; splits are {', '.join(task.split_names)}")
    return split

