"""Small building blocks with TransformerLens names and shapes: embeddings, LayerNorm, MLP.

Each block that feeds attention can also *decompose*: map a dict of residual-stream sources
(``{"E": ..., "P": ..., "H": ...}``, each ``[batch, pos, d_model]``, summing to the stream) to
the sources of its output. This is what lets `Attention` expose every QK term as a hook.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from circuits.errors import CircuitsError
from circuits.models.terms import N

Sources = dict[str, Tensor]  # source name -> [batch, pos, d_model]; the values sum to the stream


def has_hooks(*hooks: HookPoint) -> bool:
    """Whether any forward or backward hook (of these hook points, or a global module hook) would
    see their activations: then they must be computed as such. Where none would, a module may
    take a fused route to the same function (``hook_result`` skipped, `F.layer_norm`, ...);
    ``run_with_cache`` attaches hooks, so caches still hold every activation."""
    return any(
        h._forward_hooks or h._forward_pre_hooks or h._backward_hooks or h._backward_pre_hooks for h in hooks
    ) or bool(
        nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks
        or nn.modules.module._global_backward_hooks or nn.modules.module._global_backward_pre_hooks
    )


class Embed(nn.Module):
    def __init__(self, d_vocab: int, d_model: int):
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(d_vocab, d_model))

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        return F.embedding(tokens, self.W_E)


class PosEmbed(nn.Module):
    """Learned absolute positional embedding, added to the residual stream."""

    def __init__(self, n_ctx: int, d_model: int):
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(n_ctx, d_model))

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        return self.W_pos[: tokens.shape[1]].expand(tokens.shape[0], -1, -1)


class LayerNorm(nn.Module):
    """Pre-LN: ``w * (x - mean) / scale + b`` with TransformerLens' ``hook_scale`` / ``hook_normalized``."""

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))
        self.b = nn.Parameter(torch.zeros(d_model))
        self.hook_scale = HookPoint()  # [batch, pos, 1]
        self.hook_normalized = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        if not has_hooks(self.hook_scale, self.hook_normalized):  # torch's fused kernel: same function
            return F.layer_norm(x, self.w.shape, self.w, self.b, self.eps)
        return self._forward_with_scale(x)[0]

    def _forward_with_scale(self, x: Tensor, read_only: bool = False) -> tuple[Tensor, Tensor]:
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        normalized = x / scale * self.w + self.b
        if read_only:
            return fire_read_only(self.hook_normalized, normalized), scale
        return self.hook_normalized(normalized), scale

    def decompose(self, sources: Sources) -> Sources:
        """Exact split of LN(sum of sources) (App. R, Eq. 33-34): each centred source times
        ``w / scale``, where scale is that of the whole stream (so the sum is exact and only the
        reading is approximate), plus the LN bias as source ``"N"``."""
        _, scale = self._forward_with_scale(sum(sources.values()), read_only=True)
        out = {name: (s - s.mean(-1, keepdim=True)) / scale * self.w for name, s in sources.items()}
        out[N] = self.b.expand_as(next(iter(sources.values())))
        return out


class RMSNorm(nn.Module):
    """Pre-RMSNorm (LLaMA): ``w * x / scale`` with ``scale = sqrt(mean(x^2) + eps)``; TransformerLens'
    ``hook_scale`` / ``hook_normalized``. No bias, so its decomposition adds no source."""

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))
        self.hook_scale = HookPoint()  # [batch, pos, 1]
        self.hook_normalized = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        if not has_hooks(self.hook_scale, self.hook_normalized):  # torch's fused kernel: same function
            return F.rms_norm(x, self.w.shape, self.w, self.eps)
        return self._forward_with_scale(x)[0]

    def _forward_with_scale(self, x: Tensor, read_only: bool = False) -> tuple[Tensor, Tensor]:
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        normalized = x / scale * self.w
        if read_only:
            return fire_read_only(self.hook_normalized, normalized), scale
        return self.hook_normalized(normalized), scale

    def decompose(self, sources: Sources) -> Sources:
        """Exact split of RMSNorm(sum of sources): each source times ``w / scale``, with the
        scale of the whole stream (linear given the scale, so the parts sum exactly)."""
        _, scale = self._forward_with_scale(sum(sources.values()), read_only=True)
        return {name: s / scale * self.w for name, s in sources.items()}


class MLP(nn.Module):
    """``gelu(x W_in + b_in) W_out + b_out``; ``d_in`` (default ``d_model``) lets it map between
    widths (the VLM's projector)."""

    def __init__(self, d_model: int, d_mlp: int, d_in: int | None = None):
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(d_model if d_in is None else d_in, d_mlp))
        self.b_in = nn.Parameter(torch.zeros(d_mlp))
        self.W_out = nn.Parameter(torch.empty(d_mlp, d_model))
        self.b_out = nn.Parameter(torch.zeros(d_model))
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        pre = self.hook_pre(_affine(x, self.W_in, self.b_in))
        post = self.hook_post(F.gelu(pre))
        return _affine(post, self.W_out, self.b_out)


def _affine(x: Float[Tensor, "... d_in"], W: Float[Tensor, "d_in d_out"], b: Float[Tensor, " d_out"]) -> Float[Tensor, "... d_out"]:
    """``x @ W + b`` as one ``addmm`` (the bias added in the matmul's own pass)."""
    return torch.addmm(b, x.reshape(-1, x.shape[-1]), W).view(*x.shape[:-1], W.shape[-1])


class _SoftmaxLast(torch.autograd.Function):
    """Softmax over the last axis from elementary ops; backward ``p * (g - sum(g * p))``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor) -> Tensor:  # type: ignore[override]
        e = (x - x.amax(-1, keepdim=True)).exp_()
        return e.div_(e.sum(-1, keepdim=True))

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (p,) = ctx.saved_tensors
        gp = grad * p
        return gp - p * gp.sum(-1, keepdim=True)


def softmax(x: Float[Tensor, "... n"]) -> Float[Tensor, "... n"]:
    """``F.softmax(x, dim=-1)``, fast for short rows too.

    torch's CPU kernel takes a slow path for rows shorter than 16 (about 15x slower for the
    vision encoder's 11 keys); those go through `_SoftmaxLast` (same function, to float rounding).
    """
    if x.shape[-1] >= 16 or x.device.type != "cpu":
        return F.softmax(x, dim=-1)
    return _SoftmaxLast.apply(x)


def fire_read_only(hook: HookPoint, x: Tensor) -> Tensor:
    """Fire ``hook`` where the decomposed path does not use its value: an edit raises a
    `CircuitsError` instead of being silently ignored. Returns ``x``."""
    out = hook(x)
    if out is not x and not torch.equal(out, x):
        raise CircuitsError(
            f"{hook.name} is read-only in decomposed mode (its value is not used there); "
            "edit the per-source hooks (hook_score_*, hook_v_*) or run without decompose"
        )
    return x


def init_normal_(param: Tensor, std: float, generator: torch.Generator) -> None:
    with torch.no_grad():
        param.normal_(0.0, std, generator=generator)


def fan_in_std(fan_in: int, override: float | None) -> float:
    return override if override is not None else 1.0 / math.sqrt(fan_in)
