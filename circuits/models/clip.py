"""The CLIP pair: a hooked vision encoder, a hooked text encoder, a text projection into the
image space and a learnable logit scale; similarity is the cosine (Sec. 2.2).

The pair is itself a `HookedRootModule`: its hook names are the encoders' with a prefix
(``vision.blocks.0.attn.hook_q``, ``text.hook_embed``), so ``model.run_with_cache(images,
captions)`` caches both sides; `HookedCLIP.encoder_caches` splits such a cache into one
`ActivationCache` per encoder (prefix stripped) for the TransformerLens utilities. Hook
functions still see the encoder's own name (``hook.name == "blocks.0.attn.hook_q"``).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from functools import partial
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens import ActivationCache, HookedRootModule
from transformer_lens.hook_points import HookPoint

from circuits.config import ModelConfig, RunConfig
from circuits.tasks import Task
from circuits.models.components import init_normal_
from circuits.models.encoder import HookedEncoder, HookedTextEncoder, HookedVisionEncoder

Hooks = list[tuple[str | Callable[[str], bool], Callable]]


class HookedCLIP(HookedRootModule):
    """``.vision`` and ``.text`` are `HookedRootModule`s with their own hook names, and the pair
    is one with both sets under ``vision.`` / ``text.``; ``.cfg`` is the `ModelConfig` that made the pair. Built from sizes, never from a dataset::

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
        self.setup()

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

    def setup(self) -> None:
        """Hook and module names with the encoder prefix; the hook points keep the encoder-relative
        ``name`` each encoder gave them (so encoder-level caches and hook functions are unchanged)."""
        self.mod_dict, self.hook_dict = {}, {}
        for name, module in self.named_modules():
            if name:
                self.mod_dict[name] = module
                if isinstance(module, HookPoint):
                    self.hook_dict[name] = module

    @contextmanager
    def hooks(
        self,
        fwd_hooks: Hooks = (),
        bwd_hooks: Hooks = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        *,
        vision: Hooks = (),
        text: Hooks = (),
    ) -> Iterator[HookedCLIP]:
        """Temporary hooks: ``fwd_hooks`` with prefixed names (``"vision.hook_embed"``), or per
        encoder with its own names (``vision=[("hook_embed", fn)]``)."""
        fwd = [*fwd_hooks, *_prefixed("vision", vision), *_prefixed("text", text)]
        with super().hooks(list(fwd), list(bwd_hooks), reset_hooks_end, clear_contexts):
            yield self

    def get_caching_hooks(self, *args: Any, **kwargs: Any) -> tuple[dict, list, list]:
        """TransformerLens' caching hooks, storing each activation under its prefixed name."""
        cache, fwd, bwd = super().get_caching_hooks(*args, **kwargs)
        return cache, [(n, _under_name(fn, n)) for n, fn in fwd], [(n, _under_name(fn, n)) for n, fn in bwd]

    def run_with_cache(self, *args: Any, **kwargs: Any) -> tuple[Tensor, ActivationCache]:  # type: ignore[override]
        """``model.run_with_cache(images, captions)``: logits and a cache with prefixed names."""
        out, cache = super().run_with_cache(*args, **kwargs)
        return out, ActivationCache(cache, self, has_batch_dim=not kwargs.get("remove_batch_dim", False))

    def encoder_caches(self, cache: ActivationCache | dict[str, Tensor]) -> dict[str, ActivationCache]:
        """``{"vision": ActivationCache, "text": ActivationCache}`` from a cache of the pair, names
        stripped of their prefix, each bound to its encoder (so ``accumulated_resid`` etc. work)."""
        data = cache.cache_dict if isinstance(cache, ActivationCache) else cache
        batch = cache.has_batch_dim if isinstance(cache, ActivationCache) else True
        out = {}
        for side, enc in self.encoders.items():
            prefix = side + "."
            part = {k[len(prefix) :]: v for k, v in data.items() if k.startswith(prefix)}
            out[side] = ActivationCache(part, enc, has_batch_dim=batch)
        return out


def _prefixed(side: str, hooks: Hooks) -> Hooks:
    """Encoder-level hooks as hooks of the pair."""
    out = []
    for name, fn in hooks:
        if isinstance(name, str):
            out.append((f"{side}.{name}", fn))
        else:
            out.append((partial(_filter_under, side + ".", name), fn))
    return out


def _filter_under(prefix: str, names_filter: Callable[[str], bool], name: str) -> bool:
    return name.startswith(prefix) and names_filter(name[len(prefix) :])


class _Renamed:
    """A hook point seen under another name (what a caching hook stores the activation as)."""

    def __init__(self, hook: HookPoint, name: str):
        self._hook, self.name = hook, name

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._hook, attr)


def _call_renamed(fn: Callable, name: str, tensor: Tensor, hook: HookPoint) -> Any:
    return fn(tensor, hook=_Renamed(hook, name))


def _under_name(fn: Callable, name: str) -> Callable:
    wrapped = partial(_call_renamed, fn, name)
    wrapped.reads_only = True  # type: ignore[attr-defined]  # a caching hook: never edits
    return wrapped
