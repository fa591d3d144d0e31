"""Objectives: what training minimises, as a function of a model and a batch.

An objective is anything with ``loss(model, batch) -> scalar tensor`` (the `Objective`
protocol); `fit` also takes a plain function ``(model, batch) -> scalar``. `ClipObjective` is
the default recipe's: the multi-positive symmetric CLIP loss (`clip_loss`) on a `ClipBatch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Union, runtime_checkable

import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from circuits.errors import ConfigError
from circuits.tasks.captioning import CaptionBatch
from circuits.train.loss import clip_loss_of_embeddings, masked_clip_loss


@runtime_checkable
class Objective(Protocol):
    def loss(self, model: nn.Module, batch: Any) -> Float[Tensor, ""]:
        """The scalar to minimise on ``batch``; must be differentiable in the model's parameters."""
        ...


LossFn = Callable[[nn.Module, Any], Tensor]
ObjectiveLike = Union[Objective, LossFn]


def loss_function(objective: ObjectiveLike) -> LossFn:
    """``objective.loss`` for an `Objective`, the function itself for a plain ``(model, batch) -> loss``."""
    return objective.loss if isinstance(objective, Objective) else objective


@dataclass(frozen=True)
class ClipBatch:
    """Images, the texts of the loss and which text is true of which image.

    ``truth[i, c]``: caption ``c`` is true of image ``i``; ``chosen[i]``: the caption drawn as
    image i's text (needed by ``loss="mask_false_negatives"``). `take` selects images
    (minibatches); the texts stay (captions true of no selected image drop out of the loss).
    """

    images: Int[Tensor, "batch seq"]
    captions: Int[Tensor, "n_captions caption_len"]
    truth: Bool[Tensor, "batch n_captions"]
    chosen: Int[Tensor, " batch"] | None = None

    def __len__(self) -> int:
        return len(self.images)

    def take(self, index: Int[Tensor, " k"]) -> ClipBatch:
        chosen = None if self.chosen is None else self.chosen[index]
        return ClipBatch(self.images[index], self.captions, self.truth[index], chosen)


@dataclass(frozen=True)
class ClipObjective:
    """Symmetric multi-positive CLIP loss of a CLIP pair (``encode_image``, ``encode_text``, ``scale``).

    ``pooled_only`` (default True) uses the encoders' pooled-row-only forward (exact, much
    faster); False runs the full hooked forward (same function; for benchmarks, cross-checks).
    ``loss_mode``: ``"soft_targets"`` (`clip_loss`) or ``"mask_false_negatives"`` (`masked_clip_loss`,
    which needs ``batch.chosen``). ``positives`` (soft targets only; `train.positives`):
    ``"all_true"``, every caption true of an image is a positive; ``"one_drawn"``, only its chosen
    text is, so a caption that is also true of it but worded otherwise is a negative.
    """

    pooled_only: bool = True
    loss_mode: str = "soft_targets"
    positives: str = "all_true"

    def __post_init__(self) -> None:
        if self.loss_mode not in ("soft_targets", "mask_false_negatives"):
            raise ConfigError(f"loss mode must be 'soft_targets' or 'mask_false_negatives' (got {self.loss_mode!r})")
        if self.positives not in ("all_true", "one_drawn"):
            raise ConfigError(f"positives must be 'all_true' or 'one_drawn' (got {self.positives!r})")

    def loss(self, model: nn.Module, batch: ClipBatch) -> Float[Tensor, ""]:
        img = model.encode_image(batch.images, pooled_only=self.pooled_only)
        txt = model.encode_text(batch.captions, pooled_only=self.pooled_only)
        if self.loss_mode == "mask_false_negatives":
            if batch.chosen is None:
                raise ConfigError("loss 'mask_false_negatives' needs a batch with a chosen text per image (ClipBatch.chosen)")
            logits = model.scale * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
            return masked_clip_loss(logits, batch.truth, batch.chosen)
        if self.positives == "one_drawn":
            if batch.chosen is None:
                raise ConfigError("positives 'one_drawn' needs a batch with a chosen text per image (ClipBatch.chosen)")
            truth = F.one_hot(batch.chosen, len(batch.captions)).bool()
        else:
            truth = batch.truth
        # = clip_loss(model.scale * normalize(img) @ normalize(txt).T, truth), fused
        return clip_loss_of_embeddings(img, txt, model.scale, truth)


@dataclass(frozen=True)
class CaptionObjective:
    """Next-token cross-entropy on the caption tokens only ([L] App. O): the logits at the text
    positions ([BOS] w1 w2 w3) against the targets (w1 w2 w3 [EOT]); vision positions carry no loss."""

    def loss(self, model: nn.Module, batch: CaptionBatch) -> Float[Tensor, ""]:
        logits = model(batch.tokens)
        return F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten())
