"""Hooked encoders, the CLIP pair and the prefix-LM toy VLM, built on `transformer_lens.HookedRootModule`."""

from circuits.models.attention import Attention
from circuits.models.clip import HookedCLIP
from circuits.models.encoder import HookedEncoder, HookedTextEncoder, HookedVisionEncoder, TransformerBlock
from circuits.models.factory import build_model
from circuits.models.masks import AttentionMask, Bidirectional, Block, Causal, Prefix
from circuits.models.vision_source import VisionEncoderSource
from circuits.models.vlm import HookedPrefixLM

__all__ = [
    "AttentionMask", "Bidirectional", "Block", "Causal", "Prefix", "Attention", "HookedCLIP", "HookedEncoder",
    "HookedPrefixLM", "HookedTextEncoder", "HookedVisionEncoder", "TransformerBlock", "VisionEncoderSource",
    "build_model"]
