"""CLIP-style contrastive training."""

from circuits.train.checkpointed import train_or_load, train_to_directory
from circuits.train.loop import TrainResult, make_optimizer, resolve_device, train
from circuits.train.loss import clip_loss, clip_loss_reference

__all__ = ["TrainResult", "clip_loss", "clip_loss_reference", "make_optimizer", "resolve_device", "train", "train_or_load", "train_to_directory"]
