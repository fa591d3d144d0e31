"""Training, in swappable parts: model, objective, batches, optimiser, step.

* `fit` - the generic loop (any ``nn.Module``, objective and batch iterator), metrics and progress bar;
* `Objective` / `ClipObjective` / `clip_loss` - what is minimised;
* `full_batch` / `minibatches` / `batches` - batch samplers over device tensors;
* `make_optimizer` - AdamW, no weight decay on the logit scale;
* `train` - the default CLIP recipe composed of the above (`train(cfg) -> Run`);
* `train_to_directory` / `train_or_load` - the recipe straight into a checkpoint directory;
* `circuits.train.functional` - the same step under `torch.func` for stacked copies (ensembles).

``circuits.train`` is this package; the recipe is ``circuits.train.train`` and, at the top
level, ``circuits.train_model``.
"""

from circuits.train.batches import batches, full_batch, minibatches, take_rows
from circuits.train.checkpointed import train_or_load, train_to_directory
from circuits.train.loop import TrainResult, clip_batch, fit, make_optimizer, optimizer_step, resolve_device, train
from circuits.train.loss import clip_loss, clip_loss_reference
from circuits.train.objective import ClipBatch, ClipObjective, Objective

__all__ = [
    "ClipBatch",
    "ClipObjective",
    "Objective",
    "TrainResult",
    "batches",
    "clip_batch",
    "clip_loss",
    "clip_loss_reference",
    "fit",
    "full_batch",
    "make_optimizer",
    "minibatches",
    "optimizer_step",
    "resolve_device",
    "take_rows",
    "train",
    "train_or_load",
    "train_to_directory",
]
