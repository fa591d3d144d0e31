"""Synthetic spatial-relation worlds: images, captions and the splits behind the three
generalization metrics of Sec. 2.3."""

from circuits.data.vocab import Vocab
from circuits.data.world import CAPTION_LEN, EVAL_SPLITS, SPLIT_NAMES, Split, World

__all__ = ["CAPTION_LEN", "EVAL_SPLITS", "SPLIT_NAMES", "Split", "Vocab", "World"]
