"""The prefix-LM toy VLM of [L] App. O, the testbed of [B] (spec A13, B0).

Pixels are looked up in a frozen random table (no positions), or read as the per-pixel
residual stream of a frozen CLIP vision encoder (one or several layers; `vision_source`), mapped by an MLP projector
(LLaVA's mlp2x_gelu), multiplied by a fixed ``vision_scale`` c, optionally average-pooled to s
tokens ([B] Sec. 3.2) and optionally norm-matched ([B] Sec. 5.2). They form the prefix of a
decoder built from the same hooked parts as the encoders (`HookedEncoder`: `TransformerBlock`,
`Attention`, learned or rotary positions, no norm / LayerNorm / RMSNorm) under the `Prefix`
mask: vision tokens attend bidirectionally among themselves, text tokens causally and to every
vision token. Input and output::

    tokens  [batch, n_pixels + n_text]   pixel values (no [CLS]) then [BOS] w1 w2 w3
    logits  [batch, n_text, d_vocab]     next-token logits at the text positions

Residual positions are ``0..n_vision-1`` (vision tokens, after pooling) then the text. The
decomposition sources are the encoders': E (the vision tokens entering the decoder at vision
positions, the text embedding at text positions), P (learned positions), H, N, B; so
``blocks.0.attn.hook_score_EP`` restricted to text queries and vision keys is App. O's Fig. 23.

Hooks of the vision input: ``vision.hook_vision_features`` (what enters the projector, per
pixel), ``vision.encoder.*`` (the frozen CLIP encoder of a ``clip_*`` source),
``vision.projector.hook_pre|post`` (frozen_random with nothing hooked on the features: on the
table of pixel values, [1, d_vocab_vision, ·], the projector being applied once per value; per
pixel otherwise), ``vision.hook_projected``
(projector output x c, per pixel), ``vision.hook_pooled`` (after pooling),
``vision.norm.*`` and ``vision.hook_out`` (what enters the decoder, [batch, n_vision, d_model]).
"""

from __future__ import annotations

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from circuits.config import DecoderConfig, RunConfig
from circuits.errors import CircuitsError, ConfigError
from circuits.models.components import MLP, Sources, fan_in_std, init_normal_
from circuits.models.encoder import HookedEncoder
from circuits.models.masks import Prefix
from circuits.models.terms import E, P
from circuits.models.vision_source import VisionEncoderSource, check_encoder, clip_features, feature_layers, frozen_copy

MATCH_CODE_EPS = 1e-6  # [B] code: RMSNorm eps of NormalizedProjector


def match_code_norm(
    x: Float[Tensor, "batch pos d"], w: Float[Tensor, " d"], max_norm: Tensor | float, target_mean: Tensor | float
) -> Float[Tensor, "batch pos d"]:
    """[B] Sec. 5.2 "Norm Matching", exactly as the authors' ``NormalizedProjector`` does it:
    RMSNorm (weight ``w``, eps 1e-6), clip each token's L2 norm at ``max_norm``, then multiply by
    ``target_mean``. The output norm is ``min(||RMSNorm(x)||, max_norm) * target_mean``; as
    ``||RMSNorm(x)|| ~ sqrt(d) |w|`` exceeds ``max_norm``, every token ends near
    ``max_norm * target_mean`` (~1.01 with the code's 1.22, 0.83), not at the text mean."""
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + MATCH_CODE_EPS) * w
    n = x.norm(dim=-1, keepdim=True)
    return x * (max_norm / n).clamp(max=1.0) * target_mean


def match_mean_norm(x: Float[Tensor, "batch pos d"], target_mean: Tensor | float) -> Float[Tensor, "batch pos d"]:
    """Rescale every token to L2 norm ``target_mean`` (the text-embedding mean norm; our
    variant of [B] Sec. 5.2 that lands on the mean, which ``match_code`` does not)."""
    return x / x.norm(dim=-1, keepdim=True) * target_mean


class VisionNorm(nn.Module):
    """Norm matching of the vision tokens: ``none``, ``match_code`` or ``match_mean`` (B5).
    The targets are buffers (saved with the model): the text-embedding norm statistics
    measured when the model was built, unless the config fixes them."""

    def __init__(self, kind: str, d_model: int, target_mean: float, max_norm: float):
        super().__init__()
        self.kind = kind
        if kind == "match_code":
            self.w = nn.Parameter(torch.ones(d_model))  # the RMSNorm weight, learned (init 1)
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("max_norm", torch.tensor(float(max_norm)))
        self.hook_normalized = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        if self.kind == "none":
            return x
        if self.kind == "match_code":
            return self.hook_normalized(match_code_norm(x, self.w, self.max_norm, self.target_mean))
        return self.hook_normalized(match_mean_norm(x, self.target_mean))


def average_pool(
    x: Float[Tensor, "batch pixels d"], height: int, width: int, n_tokens: int | None
) -> Float[Tensor, "batch n_tokens d"]:
    """[B] Sec. 3.2 spatial compression: average-pool the row-major pixel tokens of a
    ``height x width`` image to ``n_tokens`` equal bins (1D: ``width / n`` consecutive pixels;
    2D: an ``s x s`` grid, ``n = s^2``), as ``AdaptiveAvgPool`` with sizes that divide."""
    if n_tokens is None or n_tokens == height * width:
        return x
    if height == 1:
        return einops.reduce(x, "b (s k) d -> b s d", "mean", s=n_tokens)
    side = int(round(n_tokens**0.5))
    return einops.reduce(x, "b (sr hr sc wc) d -> b (sr sc) d", "mean", sr=side, sc=side, hr=height // side)


class Linear(nn.Module):
    """``x W + b`` (the ``projector="linear"`` of LLaVA v1)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.W = nn.Parameter(torch.empty(d_in, d_out))
        self.b = nn.Parameter(torch.zeros(d_out))

    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        return x @ self.W + self.b


class VisionInput(nn.Module):
    """Vision source (`circuits.models.vision_source`) -> projector -> x vision_scale -> pool -> norm matching."""

    def __init__(
        self, cfg: DecoderConfig, d_vocab_vision: int, height: int, width: int, target_mean: float, max_norm: float,
        source: VisionEncoderSource | None = None,
    ):
        super().__init__()
        self.cfg, self.height, self.width = cfg, height, width
        if cfg.vision_source == "frozen_random":
            if source is not None:
                raise ConfigError("a vision encoder was given, but model.decoder.vision_source is 'frozen_random'")
            self.W_vis = nn.Parameter(torch.empty(d_vocab_vision, cfg.d_model), requires_grad=False)  # frozen
            d_in = cfg.d_model
        else:
            if source is None:
                raise ConfigError(f"model.decoder.vision_source={cfg.vision_source!r} needs the frozen vision encoder of"
                                  " model.decoder.vision_checkpoint: build the model with"
                                  " circuits.checkpoint.new_model(cfg, task) (or circuits.train / circuits.load)")
            check_encoder(source, d_vocab_vision, height * width)
            self.encoder = frozen_copy(source.encoder)
            self.layers = feature_layers(cfg, self.encoder.cfg.n_layers)
            self.cls_token = source.cls_token
            self.source_meta = source.meta()
            d_in = len(self.layers) * self.encoder.cfg.d_model
        self.d_features = d_in
        self.projector = MLP(cfg.d_model, cfg.d_model, d_in=d_in) if cfg.projector == "mlp2x_gelu" else Linear(d_in, cfg.d_model)
        self.norm = VisionNorm(cfg.vision_norm, cfg.d_model, target_mean, max_norm)
        self.hook_vision_features = HookPoint()  # [batch, pixels, d_features]: what enters the projector
        self.hook_projected = HookPoint()  # [batch, pixels, d_model]
        self.hook_pooled = HookPoint()  # [batch, n_vision, d_model]
        self.hook_out = HookPoint()  # [batch, n_vision, d_model]

    @property
    def n_tokens(self) -> int:
        return self.cfg.pool_tokens or self.height * self.width

    def train(self, mode: bool = True) -> VisionInput:
        """A frozen CLIP encoder stays in eval mode (no dropout), whatever the model's mode."""
        super().train(mode)
        if hasattr(self, "encoder"):
            self.encoder.eval()
        return self

    def forward(self, pixels: Int[Tensor, "batch pixels"]) -> Float[Tensor, "batch n_vision d_model"]:
        if hasattr(self, "encoder"):
            features = clip_features(self.encoder, pixels, self.cls_token, self.layers)
            x = self.projector(self.hook_vision_features(features))
        elif self.hook_vision_features.fwd_hooks:  # someone reads or edits the features: project per pixel
            x = self.projector(self.hook_vision_features(self.W_vis[pixels]))
        else:  # the same numbers, projecting each pixel value once: [d_vocab_vision, d_model]
            x = self.projector(self.W_vis[None])[0][pixels]
        x = self.hook_projected(x * self.cfg.vision_scale)
        x = self.hook_pooled(average_pool(x, self.height, self.width, self.cfg.pool_tokens))
        return self.hook_out(self.norm(x))


class HookedPrefixLM(HookedEncoder):
    """The App. O toy VLM: a `HookedEncoder` whose first ``n_vision`` positions are vision
    tokens (`VisionInput`) and whose output is next-token logits at the text positions.

    ``decompose=True`` (or `decomposed()`) exposes every score term as a hook, as for the
    encoders; `circuits.decompose.decompose(model, tokens, layer)` works unchanged. Built from
    sizes (`circuits.tasks.CaptionTask.model_sizes`)::

        HookedPrefixLM(cfg.model.decoder, **task.model_sizes(), seed=cfg.train.seed)
    """

    def __init__(
        self,
        cfg: DecoderConfig,
        *,
        d_vocab_vision: int,
        d_vocab_text: int,
        height: int,
        width: int,
        n_text: int,
        seed: int = 0,
        vision: VisionEncoderSource | None = None,
    ):
        n_vision = cfg.pool_tokens or height * width
        gen = torch.Generator().manual_seed(seed)
        super().__init__(cfg, d_vocab_text, n_vision + n_text, generator=gen, mask=Prefix(n_vision))
        self.n_pixels, self.n_vision, self.n_text = height * width, n_vision, n_text
        self.pool_index = n_vision  # the [BOS] row: the query statistics read by default
        norms = self.embed.W_E.detach().norm(dim=-1)  # B5: the text-embedding norms at insertion time
        target_mean = cfg.norm_target_mean if cfg.norm_target_mean is not None else float(norms.mean())
        max_norm = cfg.norm_max if cfg.norm_max is not None else float(norms.max())
        self.vision = VisionInput(cfg, d_vocab_vision, height, width, target_mean, max_norm, vision)
        self.W_U = nn.Parameter(torch.empty(cfg.d_model, d_vocab_text))
        self.b_U = nn.Parameter(torch.zeros(d_vocab_text))
        if cfg.vision_source == "frozen_random":
            init_normal_(self.vision.W_vis, cfg.vision_init_std, gen)
        proj, d_in = self.vision.projector, self.vision.d_features
        if isinstance(proj, MLP):
            init_normal_(proj.W_in, fan_in_std(d_in, cfg.init_weight_std), gen)
            init_normal_(proj.W_out, fan_in_std(cfg.d_model, cfg.init_weight_std), gen)
        else:
            init_normal_(proj.W, fan_in_std(d_in, cfg.init_weight_std), gen)
        init_normal_(self.W_U, fan_in_std(cfg.d_model, cfg.init_weight_std), gen)
        self.setup()

    @classmethod
    def for_task(cls, cfg: RunConfig, task, vision: VisionEncoderSource | None = None) -> HookedPrefixLM:
        """The VLM ``cfg.model.decoder`` describes, sized for ``task``, initialised from ``cfg.train.seed``;
        ``vision``: the loaded CLIP vision encoder of a ``clip_*`` source."""
        return cls(cfg.model.decoder, **task.model_sizes(), seed=cfg.train.seed, vision=vision)

    @property
    def vision_source_meta(self) -> dict | None:
        """How to rebuild the frozen CLIP encoder of a ``clip_*`` source (`VisionEncoderSource.meta`); None otherwise."""
        return getattr(self.vision, "source_meta", None)

    def setup(self) -> None:
        super().setup()
        # the frozen CLIP encoder is never decomposed: `clip_features` refuses hooks on its terms itself
        self._decomposed_only = frozenset(n for n in self._decomposed_only if not n.startswith("vision.encoder."))

    @property
    def device(self) -> torch.device:
        return self.W_U.device

    @property
    def encoders(self) -> dict[str, HookedEncoder]:
        """The hooked stacks by name (as `HookedCLIP.encoders`): the decoder is this model."""
        return {"decoder": self}

    def token_groups(self, n_pos: int | None = None) -> dict[str, Tensor]:
        """Residual positions of each token group: ``{"vision": [0..n_vision), "text": [n_vision..n_pos)}``."""
        n_pos = self.n_ctx if n_pos is None else n_pos
        pos = torch.arange(n_pos, device=self.device)
        return {"vision": pos[: self.n_vision], "text": pos[self.n_vision :]}

    def split_tokens(self, tokens: Int[Tensor, "batch seq"]) -> tuple[Tensor, Tensor]:
        """(pixels [batch, n_pixels], text [batch, t]) of an input, checked."""
        if tokens.ndim != 2 or not self.n_pixels < tokens.shape[1] <= self.n_pixels + self.n_text:
            raise CircuitsError(
                f"expected tokens of shape [batch, {self.n_pixels} pixels + 1..{self.n_text} text tokens], got {tuple(tokens.shape)}"
            )
        return tokens[:, : self.n_pixels], tokens[:, self.n_pixels :]

    def embed_sources(self, tokens: Int[Tensor, "batch seq"]) -> Sources:
        """Input sources of layer 0: E = vision tokens then text embeddings, P = positions."""
        pixels, text = self.split_tokens(tokens)
        embedded = torch.cat([self.vision(pixels), self.embed(text)], dim=1)
        sources = {E: self.hook_embed(embedded)}
        if self.pos_embed is not None:
            sources[P] = self.hook_pos_embed(self.pos_embed(embedded[..., 0]))
        return sources

    def forward(
        self, tokens: Int[Tensor, "batch seq"], *, decompose: bool | None = None, pooled_only: bool = False
    ) -> Float[Tensor, "batch text d_vocab"]:
        """Next-token logits at the text positions. There is no pooled fast path."""
        if pooled_only:
            raise CircuitsError("the prefix-LM has no pooled fast path; call it with pooled_only=False")
        decompose = self.decompose if decompose is None else decompose
        self._check_hooks(decompose, False)
        resid = self.stream(self.embed_sources(tokens), decompose)
        return resid[:, self.n_vision :] @ self.W_U + self.b_U

    @torch.no_grad()
    def generate(self, pixels: Int[Tensor, "batch pixels"], bos: int, n_new: int | None = None) -> Int[Tensor, "batch n_new"]:
        """Greedy decoding from ``[vision][BOS]`` ([L] App. O: "free generation"). Every step runs
        the full-length input (later text slots hold BOS; the causal mask hides them)."""
        n_new = self.n_text if n_new is None else n_new
        if not 1 <= n_new <= self.n_text:
            raise ConfigError(f"n_new must be between 1 and {self.n_text} (got {n_new})")
        text = torch.full((pixels.shape[0], self.n_text), bos, dtype=torch.long, device=pixels.device)
        out = []
        for i in range(n_new):
            token = self(torch.cat([pixels, text], dim=1))[:, i].argmax(-1)
            out.append(token)
            if i + 1 < self.n_text:
                text[:, i + 1] = token
        return torch.stack(out, dim=1)
