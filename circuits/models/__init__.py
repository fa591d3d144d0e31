"""Hooked encoders and the CLIP pair, built on `transformer_lens.HookedRootModule`."""

from circuits.models.attention import Attention
from circuits.models.clip import HookedCLIP
from circuits.models.encoder import HookedEncoder, HookedTextEncoder, HookedVisionEncoder, TransformerBlock
from circuits.models.masks import AttentionMask, Bidirectional, Block, Causal, Prefix

__all__ = [
    "AttentionMask", "Bidirectional", "Block", "Causal", "Prefix",
    "Attention", "HookedCLIP", "HookedEncoder", "HookedTextEncoder", "HookedVisionEncoder", "TransformerBlock"]
