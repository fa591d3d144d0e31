"""Attention masks as small frozen objects: which key positions each query position may read.

`Attention` takes one of these instead of a flag; every path (plain, decomposed, pooled,
pooled-from-table) asks it for ``allowed(q_pos, k_pos)``. `EncoderConfig.mask` names the two
an encoder config can choose ("bidirectional", "causal"); a model may pass any `AttentionMask`
(e.g. `Prefix` for a prefix-LM, `Block` for independent segments) directly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from circuits.errors import ConfigError


@dataclass(frozen=True)
class AttentionMask(ABC):
    """Base class. Subclasses implement `allowed`; every query must be allowed at least one key."""

    @abstractmethod
    def allowed(self, q_pos: Int[Tensor, " q"], k_pos: Int[Tensor, " k"]) -> Bool[Tensor, "q k"]:
        """``allowed[i, j]``: query position ``q_pos[i]`` may read key position ``k_pos[j]``."""

    @property
    def is_full(self) -> bool:
        """True when every query sees every key (no masking work is needed)."""
        return False


@dataclass(frozen=True)
class Bidirectional(AttentionMask):
    """Every position attends to every position (vision encoder)."""

    def allowed(self, q_pos: Int[Tensor, " q"], k_pos: Int[Tensor, " k"]) -> Bool[Tensor, "q k"]:
        return torch.ones(len(q_pos), len(k_pos), dtype=torch.bool, device=q_pos.device)

    @property
    def is_full(self) -> bool:
        return True


@dataclass(frozen=True)
class Causal(AttentionMask):
    """Query i attends to keys j <= i (text encoder)."""

    def allowed(self, q_pos: Int[Tensor, " q"], k_pos: Int[Tensor, " k"]) -> Bool[Tensor, "q k"]:
        return k_pos[None, :] <= q_pos[:, None]


@dataclass(frozen=True)
class Prefix(AttentionMask):
    """Prefix-LM: positions < n_prefix attend bidirectionally among themselves; later positions
    are causal and see the whole prefix."""

    n_prefix: int

    def allowed(self, q_pos: Int[Tensor, " q"], k_pos: Int[Tensor, " k"]) -> Bool[Tensor, "q k"]:
        return (k_pos[None, :] <= q_pos[:, None]) | (k_pos[None, :] < self.n_prefix)


@dataclass(frozen=True)
class Block(AttentionMask):
    """Block-diagonal: positions attend bidirectionally within consecutive blocks of ``size``."""

    size: int

    def allowed(self, q_pos: Int[Tensor, " q"], k_pos: Int[Tensor, " k"]) -> Bool[Tensor, "q k"]:
        return (k_pos[None, :] // self.size) == (q_pos[:, None] // self.size)


MASKS: dict[str, AttentionMask] = {"bidirectional": Bidirectional(), "causal": Causal()}


def make_mask(name: str) -> AttentionMask:
    """The mask an `EncoderConfig.mask` names."""
    if name not in MASKS:
        raise ConfigError(f"unknown attention mask {name!r}; masks are {', '.join(MASKS)}")
    return MASKS[name]
