"""The CLIP pair: a hooked vision encoder, a hooked text encoder, a text projection into the
image space and a learnable logit scale; similarity is the cosine (Sec. 2.2)."""

from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from circuits.config import ModelConfig, RunConfig
from circuits.tasks import Task
from circuits.models.components import init_normal_
from circuits.models.encoder import HookedEncoder, HookedTextEncoder, HookedVisionEncoder

Hooks = list[tuple[str | Callable[[str], bool], Callable]]


class HookedCLIP(nn.Module):
    """``.vision`` and ``.text`` are `HookedRootModule`s with their own hook names; ``.cfg`` is the
    `ModelConfig` that made the pair. Built from sizes, never from a dataset::

        HookedCLIP(cfg.model, **world.model_sizes(), seed=cfg.train.seed)

    ``seed`` draws the initial weights (vision encoder, text encoder, text projection, in
    that order, from one generator)."""

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        d_vocab_vision: int,
        n_ctx_vision: int,
        d_vocab_text: int,
        n_ctx_text: int,
        seed: int = 0,
    ):
        super().__init__()
        self.cfg = cfg
        gen = torch.Generator().manual_seed(seed)
        vis, txt = cfg.vision, cfg.text
        self.vision = HookedVisionEncoder(vis, d_vocab_vision, n_ctx_vision, generator=gen)
        self.text = HookedTextEncoder(txt, d_vocab_text, n_ctx_text, generator=gen)
        self.text_projection = nn.Parameter(torch.empty(txt.d_model, vis.d_model))
        init_normal_(self.text_projection, 1.0 / math.sqrt(txt.d_model), gen)
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.logit_scale_init)))

    @classmethod
    def for_task(cls, cfg: RunConfig, task: Task) -> HookedCLIP:
        """The pair ``cfg.model`` describes, sized for ``task``, initialised from ``cfg.train.seed``."""
        return cls(cfg.model, **task.model_sizes(), seed=cfg.train.seed)

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    @property
    def scale(self) -> Tensor:
        """exp(logit_scale), capped at ``model.logit_scale_max``."""
        return self.logit_scale.exp().clamp(max=self.cfg.logit_scale_max)

    def encode_image(self, images: Int[Tensor, "n seq"], pooled_only: bool = False) -> Float[Tensor, "n d"]:
        return self.vision(images, pooled_only=pooled_only)

    def encode_text(self, captions: Int[Tensor, "n 4"], pooled_only: bool = False) -> Float[Tensor, "n d"]:
        return self.text(captions, pooled_only=pooled_only) @ self.text_projection

    def similarity(
        self, images: Int[Tensor, "n_img seq"], captions: Int[Tensor, "n_txt 4"], pooled_only: bool = False
    ) -> Float[Tensor, "n_img n_txt"]:
        """Cosine similarity of every image with every caption."""
        img = F.normalize(self.encode_image(images, pooled_only), dim=-1)
        txt = F.normalize(self.encode_text(captions, pooled_only), dim=-1)
        return img @ txt.T

    def forward(self, images: Int[Tensor, "n_img seq"], captions: Int[Tensor, "n_txt 4"]) -> Tensor:
        """Contrastive logits: scale * cosine similarity, [n_img, n_txt]."""
        return self.scale * self.similarity(images, captions)

    @property
    def encoders(self) -> dict[str, HookedEncoder]:
        return {"vision": self.vision, "text": self.text}

    @contextmanager
    def decomposed(self) -> Iterator[HookedCLIP]:
        """Both encoders run their term-decomposed analysis path inside this block."""
        with self.vision.decomposed(), self.text.decomposed():
            yield self

    @contextmanager
    def hooks(self, vision: Hooks = (), text: Hooks = ()) -> Iterator[HookedCLIP]:
        """Temporary forward hooks on either encoder (TransformerLens ``hooks`` on each)."""
        with ExitStack() as stack:
            stack.enter_context(self.vision.hooks(fwd_hooks=list(vision)))
            stack.enter_context(self.text.hooks(fwd_hooks=list(text)))
            yield self
