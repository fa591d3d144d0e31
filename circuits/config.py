"""Typed configuration: one `RunConfig` (task + model + training) saved with every checkpoint.

Every size and knob is a dataclass field. `RunConfig.from_dict` rejects unknown keys and
`validate()` rejects impossible settings with one-line `ConfigError`s, so the CLI can print
them as they are. Overrides use dotted keys: ``train.steps=500``, ``model.vision.n_layers=2``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from circuits.errors import ConfigError

FORMAT_VERSION = 2  # 2: EncoderConfig.mask replaced the boolean `causal` (version 1)


@dataclass
class WorldConfig:
    """The synthetic spatial-relation world (Sec. 2.1, App. A, App. K).

    Images are ``height x width`` grids of pixels read row by row (``height=1`` is the paper's
    1D world, ``height=4, width=4`` its 2D grid of App. K); "left of" compares columns.
    """

    width: int = 10  # D, the image length (columns)
    height: int = 1  # 1 = the 1D world; >1 = a 2D grid flattened row-major
    n_labels: int = 20  # N object categories, pixel values 1..N (0 is background)
    n_pair_labels: int = 15  # N_pair labels used in two-object training images
    n_single_positions: int = 5  # n_1 training positions per label (single-object images)
    n_pair_positions: int = 10  # n_2 training position pairs per ordered label pair
    captions: Literal["left", "bidirectional"] = "left"
    # "heldout_labels" (the paper's): labels N_pair+1..N never appear in a pair. "heldout_combinations"
    # (ours, a control): they also appear in training pairs, each beside a training label, and only
    # the pairs of two held-out labels stay unseen (the same unseen_pair split).
    unseen_pairs: Literal["heldout_labels", "heldout_combinations"] = "heldout_labels"
    seed: int = 0
    # The three-object world of App. N (A10.1): images with up to `max_objects` objects.
    max_objects: int = 2  # 2 = the paper's default world; 3 adds train_triple and unseen_triple
    triplets: Literal["ordered", "unordered"] = "ordered"  # which training label triplets (CHOICE: ordered)
    n_triple_positions: int = 2  # position triples per training triplet (paper: "two ... sampled")
    n_triple_test_positions: int | None = None  # per held-out triplet in unseen_triple; None = all (CHOICE)

    @property
    def n_pixels(self) -> int:
        return self.width * self.height

    def validate(self) -> None:
        """Raise `ConfigError` for an impossible world (too few labels, pixels or position pairs)."""
        w = self
        _check(w.width >= 2, f"world.width must be >= 2 (got {w.width})")
        _check(w.height >= 1, f"world.height must be >= 1 (got {w.height})")
        _check(w.n_labels >= 2, f"world.n_labels must be >= 2 (got {w.n_labels})")
        _check(
            2 <= w.n_pair_labels <= w.n_labels,
            f"world.n_pair_labels must be between 2 and world.n_labels={w.n_labels} (got {w.n_pair_labels})",
        )
        _check(
            1 <= w.n_single_positions <= w.n_pixels,
            f"world.n_single_positions must be between 1 and the number of pixels {w.n_pixels}"
            f" (got {w.n_single_positions})",
        )
        n_pos_pairs = n_position_pairs(w)
        _check(
            1 <= w.n_pair_positions <= n_pos_pairs,
            f"world.n_pair_positions must be between 1 and the number of position pairs {n_pos_pairs}"
            f" (got {w.n_pair_positions})",
        )
        _check(w.captions in ("left", "bidirectional"), f"world.captions must be 'left' or 'bidirectional' (got {w.captions!r})")
        _check(w.max_objects in (2, 3), f"world.max_objects must be 2 or 3 (got {w.max_objects})")
        if w.max_objects == 3:
            _check(w.triplets in ("ordered", "unordered"), f"world.triplets must be 'ordered' or 'unordered' (got {w.triplets!r})")
            _check(w.width >= 3, f"a 3-object world needs world.width >= 3 columns for three distinct positions (got {w.width})")
            _check(w.n_pair_labels >= 3, f"a 3-object world needs world.n_pair_labels >= 3 training labels (got {w.n_pair_labels})")
            n_held = w.n_labels - w.n_pair_labels
            _check(n_held >= 3, f"a 3-object world needs >= 3 held-out labels for its unseen_triple split"
                                f" (world.n_labels - world.n_pair_labels = {n_held})")
            n_triples = n_position_triples(w)
            _check(1 <= w.n_triple_positions <= n_triples,
                   f"world.n_triple_positions must be between 1 and the number of position triples {n_triples}"
                   f" (got {w.n_triple_positions})")
            _check(w.n_triple_test_positions is None or 1 <= w.n_triple_test_positions <= n_triples,
                   f"world.n_triple_test_positions must be null or between 1 and {n_triples} (got {w.n_triple_test_positions})")


@dataclass
class Toy2DSConfig:
    """The toy 2DS world of [B] Sec. 5.1 (spec B7), ``task = "toy2ds"``: coloured shapes on a
    grid, one question per category per image. [B]'s facts: k = 2..6 objects, one object set per
    k, 100 images per k (500), six categories (3,000 questions). Everything else is our CHOICE
    (docs/toy2ds.md).

    Images have the format of a 2D `WorldConfig` world with ``n_colors * n_shapes`` labels: a
    row-major grid of token ids, 0 = background, object (colour c, shape s) = 1 + c * n_shapes + s.
    """

    height: int = 6  # grid rows (CHOICE: 6 x 6, so 6 objects fit in distinct rows and columns)
    width: int = 6  # grid columns
    n_colors: int = 6  # red, green, blue, yellow, purple, orange (CHOICE)
    n_shapes: int = 6  # circle, square, triangle, star, cross, diamond (CHOICE)
    min_objects: int = 2  # k per image: min_objects..max_objects ([B]: 2..6)
    max_objects: int = 6
    n_test_per_k: int = 100  # test images per k ([B]: 100, i.e. 500 images / 3,000 questions)
    n_train_per_k: int = 4000  # training images per k (CHOICE: 20,000 in all)
    test_seed: int = 0  # the test set: its object set per k, layouts and questions
    train_seed: int = 1  # the training set (any object set; layouts disjoint from the test's)

    @property
    def n_pixels(self) -> int:
        return self.height * self.width

    @property
    def n_objects(self) -> int:
        return self.n_colors * self.n_shapes

    def validate(self) -> None:
        """Raise `ConfigError` for an impossible toy 2DS world."""
        q = self
        _check(q.height >= 2 and q.width >= 2, f"toy2ds.height and toy2ds.width must be >= 2 (got {q.height} x {q.width})")
        for key in ("n_colors", "n_shapes"):
            v = getattr(q, key)
            _check(2 <= v <= 6, f"toy2ds.{key} must be between 2 and 6, the named ones (got {v})")
        most = min(q.height, q.width, q.n_colors, q.n_shapes)
        _check(2 <= q.min_objects <= q.max_objects,
               f"toy2ds.min_objects must be >= 2 and <= toy2ds.max_objects (got {q.min_objects}, {q.max_objects})")
        _check(q.max_objects <= most,
               f"toy2ds.max_objects must be <= {most}: objects take distinct rows, columns, colours and shapes (got {q.max_objects})")
        _check(q.n_test_per_k >= 2, f"toy2ds.n_test_per_k must be >= 2 (got {q.n_test_per_k})")
        _check(q.n_train_per_k >= 2, f"toy2ds.n_train_per_k must be >= 2 (got {q.n_train_per_k})")


@dataclass
class EncoderConfig:
    """Architecture of one hooked Transformer encoder (vision or text).

    Sizes that depend on the world (vocabulary, context length) are not here: the CLIP pair
    derives them from the `World` it is built for.
    """

    n_layers: int = 1
    n_heads: int = 4
    d_model: int = 128
    d_head: int = 32
    d_mlp: int = 512
    attn_only: bool = True  # no MLP blocks (the paper's simplified model, Sec. 4)
    normalization: Literal["none", "pre", "pre_rms"] = "none"  # "pre": LayerNorm before attn/MLP + final LN; "pre_rms": RMSNorm (LLaMA-like)
    positional: Literal["learned", "rotary", "none"] = "learned"
    rotary_base: float = 10000.0
    qkv_bias: bool = True
    dropout: float = 0.0
    mask: Literal["bidirectional", "causal"] = "bidirectional"  # vision bidirectional, text causal
    init_embed_std: float = 0.1  # token embedding init N(0, std^2)
    init_pos_std: float = 0.1  # positional embedding init N(0, std^2)
    init_weight_std: float | None = None  # None: 1/sqrt(fan_in) for projection weights

    # TransformerLens names, read by `transformer_lens.ActivationCache` (views of the fields above)
    @property
    def normalization_type(self) -> str | None:
        return {"pre": "LN", "pre_rms": "RMS"}.get(self.normalization)

    @property
    def positional_embedding_type(self) -> str:
        return {"learned": "standard"}.get(self.positional, self.positional)

    @property
    def act_fn(self) -> str | None:
        return None if self.attn_only else "gelu"


def _vision() -> EncoderConfig:
    return EncoderConfig(mask="bidirectional")


def _text() -> EncoderConfig:
    return EncoderConfig(mask="causal")


@dataclass
class DecoderConfig(EncoderConfig):
    """The prefix-LM toy VLM of [L] App. O / [B] (``model.kind = "prefix_lm"``): vision tokens,
    an MLP projector, and a decoder (the `EncoderConfig` fields) under a prefix mask.

    Paper numbers ([L] App. O): 2 layers, attention-only, learned positions, frozen random
    vision tokens without positions, an MLP projector. Everything else is our CHOICE, listed in
    docs/config.md. ``mask`` is ignored: the decoder always uses `Prefix` over the vision tokens.
    """

    n_layers: int = 2
    mask: Literal["bidirectional", "causal"] = "causal"
    vision_source: Literal["frozen_random", "clip_tokens", "clip_multilayer"] = "frozen_random"  # [B] B0 / B6
    vision_checkpoint: str | None = None  # clip_*: a CLIP checkpoint directory; its vision encoder is frozen and copied in
    vision_layers: list[int] | None = None  # clip_multilayer: 1-based encoder layers concatenated ([B] B6); None = all
    vision_init_std: float = 0.1  # frozen vision table N(0, std^2) (CHOICE, A13)
    projector: Literal["mlp2x_gelu", "linear"] = "mlp2x_gelu"  # LLaVA's Linear -> GELU -> Linear
    vision_scale: float = 1.0  # c: fixed multiplier of the projector output ([B] B0/B2)
    vision_norm: Literal["none", "match_code", "match_mean"] = "none"  # [B] Sec. 5.2 / B5
    norm_target_mean: float | None = None  # match_*: target norm; None = measured text-embedding mean at init
    norm_max: float | None = None  # match_code clip; None = measured text-embedding max at init
    pool_tokens: int | None = None  # average-pool the vision tokens to this many ([B] Sec. 3.2); None = D
    caption_order: Literal["subject_first", "relation_first"] = "subject_first"  # "A left-of B" or "left-of A B" (CHOICE)


@dataclass
class ModelConfig:
    """The model: the CLIP pair (``kind="clip"``: two encoders, a text projection and a learnable
    logit scale) or the prefix-LM toy VLM (``kind="prefix_lm"``: the ``decoder`` section)."""

    vision: EncoderConfig = field(default_factory=_vision)
    text: EncoderConfig = field(default_factory=_text)
    logit_scale_init: float = math.log(1 / 0.07)
    logit_scale_max: float = 100.0  # the learned scale exp(s) is clamped to at most this
    kind: Literal["clip", "prefix_lm"] = "clip"
    decoder: DecoderConfig = field(default_factory=DecoderConfig)


@dataclass
class TrainConfig:
    """Optimisation; nothing here changes the architecture."""

    steps: int = 1500
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.98
    weight_decay: float = 0.1  # AdamW; never applied to the logit scale
    batch_size: int | None = None  # None = full batch (the whole training set every step)
    eval_every: int = 50  # steps between evaluations appended to metrics.jsonl
    seed: int = 0  # initialisation and minibatch order
    device: str = "auto"  # "auto" = cuda when available, else cpu
    loss: Literal["soft_targets", "mask_false_negatives"] = "soft_targets"  # App. N.2 / A10.2; see circuits.train.loss
    # Which true captions of a training image are its positives: "all_true" (every caption true of it, e.g. both
    # "X left Y" and "Y right X"), or "one_drawn" (one of them, drawn once per image from world.seed, as in a plain
    # (image, caption) dataset: an equivalent caption in other words is then a negative). CHOICE, see App. L in
    # docs/reproduction.md.
    positives: Literal["all_true", "one_drawn"] = "all_true"
    threads: int | None = 1  # CPU threads for torch; null = torch's default (one per core), see circuits.runtime


TASKS = ("relations", "toy2ds")


@dataclass
class RunConfig:
    """A run: the task (``task`` names it, ``world`` or ``toy2ds`` describes it), the model and
    its training. ``task = "relations"`` (default) is the spatial-relation `world` of [L];
    ``"toy2ds"`` the question-answering `toy2ds` world of [B] Sec. 5.1 (prefix-LM models only).
    The data section of the task not chosen must keep its defaults (`validate` refuses a change
    there instead of ignoring it)."""

    world: WorldConfig = field(default_factory=WorldConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    task: Literal["relations", "toy2ds"] = "relations"  # configs saved before this field read as "relations"
    toy2ds: Toy2DSConfig = field(default_factory=Toy2DSConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        data = dict(data)
        version = data.pop("format_version", FORMAT_VERSION)
        if version == 1:
            data = _migrate_v1(data)
        elif version != FORMAT_VERSION:
            raise ConfigError(f"unsupported config format_version {version} (expected {FORMAT_VERSION})")
        cfg = _build(cls, data, prefix="")
        cfg.validate()
        return cfg

    def with_overrides(self, overrides: list[str] | dict[str, Any]) -> RunConfig:
        """A copy with ``key=value`` overrides applied (dotted keys, values parsed as JSON or text)."""
        data = dataclasses.asdict(self)
        items = overrides.items() if isinstance(overrides, dict) else map(_split_override, overrides)
        for key, value in items:
            _set_dotted(data, key, value)
        return RunConfig.from_dict(data)

    def validate(self) -> None:
        """Raise `ConfigError` (one line) for any impossible or out-of-range setting."""
        _check(self.task in TASKS, f"task must be one of {', '.join(map(repr, TASKS))} (got {self.task!r})")
        unused, section = ("world", self.world) if self.task == "toy2ds" else ("toy2ds", self.toy2ds)
        changed = [f.name for f in fields(section) if getattr(section, f.name) != getattr(type(section)(), f.name)]
        _check(not changed, f"{unused}.{changed[0] if changed else ''} does not apply to task={self.task!r}"
                            f" (it describes the data of task={'relations' if unused == 'world' else 'toy2ds'!r}); leave {unused}.* at its defaults")
        self.world.validate()
        t = self.train
        _check(self.model.kind in ("clip", "prefix_lm"), f"model.kind must be 'clip' or 'prefix_lm' (got {self.model.kind!r})")
        if self.task == "toy2ds":
            self.toy2ds.validate()
            _check(self.model.kind == "prefix_lm",
                   f"task 'toy2ds' asks questions that a model answers in text: it needs model.kind='prefix_lm' (got {self.model.kind!r})")
        for name, enc in (("vision", self.model.vision), ("text", self.model.text), ("decoder", self.model.decoder)):
            p = f"model.{name}"
            for key in ("n_layers", "n_heads", "d_model", "d_head", "d_mlp"):
                _check(getattr(enc, key) >= 1, f"{p}.{key} must be >= 1 (got {getattr(enc, key)})")
            _check(enc.mask in ("bidirectional", "causal"), f"{p}.mask must be 'bidirectional' or 'causal' (got {enc.mask!r})")
            _check(
                enc.normalization in ("none", "pre", "pre_rms"),
                f"{p}.normalization must be 'none', 'pre' or 'pre_rms' (got {enc.normalization!r})",
            )
            _check(
                enc.positional in ("learned", "rotary", "none"),
                f"{p}.positional must be 'learned', 'rotary' or 'none' (got {enc.positional!r})",
            )
            _check(
                enc.positional != "rotary" or enc.d_head % 2 == 0,
                f"{p}.d_head must be even for rotary embeddings (got {enc.d_head})",
            )
            _check(enc.rotary_base > 0, f"{p}.rotary_base must be > 0 (got {enc.rotary_base})")
            _check(0.0 <= enc.dropout < 1.0, f"{p}.dropout must be in [0, 1) (got {enc.dropout})")
            for key in ("init_embed_std", "init_pos_std"):
                _check(getattr(enc, key) > 0, f"{p}.{key} must be > 0 (got {getattr(enc, key)})")
            _check(
                enc.init_weight_std is None or enc.init_weight_std > 0,
                f"{p}.init_weight_std must be > 0 or null (got {enc.init_weight_std})",
            )
        self._validate_decoder()
        _check(self.model.logit_scale_max > 0, f"model.logit_scale_max must be > 0 (got {self.model.logit_scale_max})")
        _check(t.steps >= 0, f"train.steps must be >= 0 (got {t.steps})")
        _check(t.lr > 0, f"train.lr must be > 0 (got {t.lr})")
        _check(0 <= t.beta1 < 1 and 0 <= t.beta2 < 1, f"train.beta1/beta2 must be in [0, 1) (got {t.beta1}, {t.beta2})")
        _check(t.weight_decay >= 0, f"train.weight_decay must be >= 0 (got {t.weight_decay})")
        _check(t.batch_size is None or t.batch_size >= 2, f"train.batch_size must be >= 2 or null (got {t.batch_size})")
        _check(t.loss in ("soft_targets", "mask_false_negatives"),
               f"train.loss must be 'soft_targets' or 'mask_false_negatives' (got {t.loss!r})")
        _check(t.positives in ("all_true", "one_drawn"),
               f"train.positives must be 'all_true' or 'one_drawn' (got {t.positives!r})")
        _check(t.eval_every >= 1, f"train.eval_every must be >= 1 (got {t.eval_every})")
        _check(t.threads is None or t.threads >= 1, f"train.threads must be >= 1 or null (got {t.threads})")
        _check(
            t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda") or t.device == "mps",
            f"train.device must be 'auto', 'cpu', 'cuda[:N]' or 'mps' (got {t.device!r})",
        )


    def _validate_decoder(self) -> None:
        d, w = self.model.decoder, (self.toy2ds if self.task == "toy2ds" else self.world)  # the task's image grid
        section = "toy2ds" if self.task == "toy2ds" else "world"
        if self.model.kind == "clip":
            changed = [f.name for f in fields(DecoderConfig) if getattr(d, f.name) != getattr(DecoderConfig(), f.name)]
            _check(d.vision_norm == "none", f"model.decoder.vision_norm={d.vision_norm!r} matches the vision tokens to the"
                                            " norms of a decoder's text embeddings; a CLIP (model.kind='clip') has none to"
                                            " measure: set model.kind=prefix_lm")
            _check(not changed, f"model.decoder.{changed[0] if changed else ''} only applies to model.kind='prefix_lm'"
                                " (this config trains a CLIP, model.kind='clip')")
        _check(d.vision_source in ("frozen_random", "clip_tokens", "clip_multilayer"),
               f"model.decoder.vision_source must be 'frozen_random', 'clip_tokens' or 'clip_multilayer' (got {d.vision_source!r})")
        if d.vision_source == "frozen_random":
            _check(d.vision_checkpoint is None, "model.decoder.vision_checkpoint is only read by vision_source='clip_tokens'"
                                                " or 'clip_multilayer' (vision_source is 'frozen_random')")
        else:
            _check(bool(d.vision_checkpoint), f"model.decoder.vision_source={d.vision_source!r} needs"
                                              " model.decoder.vision_checkpoint: a CLIP checkpoint directory (lenscli train)"
                                              " whose vision encoder gives the tokens")
        if d.vision_layers is not None:
            _check(d.vision_source == "clip_multilayer", "model.decoder.vision_layers is only read by"
                                                         f" vision_source='clip_multilayer' (got {d.vision_source!r})")
            _check(len(d.vision_layers) >= 1 and all(v >= 1 for v in d.vision_layers)
                   and len(set(d.vision_layers)) == len(d.vision_layers),
                   f"model.decoder.vision_layers must be distinct 1-based layer numbers, e.g. [1, 2] (got {d.vision_layers})")
        if d.vision_norm == "none":
            for key in ("norm_target_mean", "norm_max"):
                _check(getattr(d, key) is None, f"model.decoder.{key} is only read by norm matching; set"
                                                " model.decoder.vision_norm to 'match_code' or 'match_mean'")
        _check(d.vision_norm != "match_mean" or d.norm_max is None,
               "model.decoder.norm_max is only read by vision_norm='match_code' (match_mean rescales to the mean)")
        _check(d.caption_order == "subject_first" or self.task == "relations",
               "model.decoder.caption_order applies to the captioning task (task='relations'); the toy 2DS answers questions")
        _check(d.vision_scale > 0, f"model.decoder.vision_scale must be > 0 (got {d.vision_scale})")
        _check(d.vision_init_std > 0, f"model.decoder.vision_init_std must be > 0 (got {d.vision_init_std})")
        for key in ("norm_target_mean", "norm_max"):
            v = getattr(d, key)
            _check(v is None or v > 0, f"model.decoder.{key} must be > 0 or null (got {v})")
        if d.pool_tokens is not None:
            s = d.pool_tokens
            if w.height == 1:
                ok = s >= 1 and w.width % s == 0
                rule = f"a divisor of {section}.width={w.width}"
            else:
                side = math.isqrt(max(s, 0))
                ok = s >= 1 and side * side == s and w.height % side == 0 and w.width % side == 0
                rule = f"a square s*s with s dividing {section}.height={w.height} and {section}.width={w.width}"
            _check(ok, f"model.decoder.pool_tokens must be {rule} (got {s}): pooled bins are equal-sized")


def _migrate_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: each encoder's ``causal: true/false`` becomes ``mask: "causal"/"bidirectional"``."""
    model = data.get("model")
    if not isinstance(model, dict):
        return data
    model = dict(model)
    for side in ("vision", "text"):
        enc = model.get(side)
        if isinstance(enc, dict) and "causal" in enc:
            enc = dict(enc)
            causal = _coerce(enc.pop("causal"), bool, f"model.{side}.causal")
            enc["mask"] = "causal" if causal else "bidirectional"
            model[side] = enc
    return {**data, "model": model}


def n_position_triples(w: WorldConfig) -> int:
    """Pixel triples (a, b, c) in three distinct, increasing columns (App. N: C(10, 3) = 120 in 1D)."""
    return (w.height**3) * math.comb(w.width, 3)


def n_position_pairs(w: WorldConfig) -> int:
    """Ordered pixel pairs (a, b) with a strictly left of b (column of a < column of b)."""
    return (w.height**2) * (w.width * (w.width - 1) // 2)


# ------------------------------------------------------------------ what a config will cost
EVAL_CHUNK = 4096  # images per forward pass in evaluation (circuits.evaluation.CHUNK)
MAX_STEPS = 10_000_000  # far beyond anything useful: the default model learns in 1,500
MAX_IMAGES = 5_000_000  # images in all splits; the world is built in Python, ~ minutes per million
# Training cost model: seconds per multiply-accumulate (as counted in `estimate_resources`) on one
# CPU thread. Encoders: calibrated on the default config (``benchmarks/bench_train.py --paths fast
# --threads 1`` on an idle 2-core x86 machine: 1,500 steps in 17.0 s of training, 0.0113 s per
# step for its 4.9e9 multiply-accumulates, since the grouped pooled attention; 26.4 s before). Prefix-LM decoders run the full hooked forward (no
# per-(token, position) table), about 20x less per multiply-accumulate: calibrated on the toy 2DS
# model of `experiments/toy_2ds.py` (batch 64, ~0.064 s per step for 8.7e8).
SECONDS_PER_MAC = 2.3e-12
# Only the first attention layer of an encoder runs from the table; later attention layers run at
# every position, about 7x dearer per multiply-accumulate: calibrated on 2-layer vision + 2-layer
# text attention-only models (148 ms per step, of which 130 ms for 4.9e9 such MACs), one thread at
# load ~2.5, 2026-11-28. MLPs (with pre-LN, dropout and GELU around them) take about 310 ms for
# their 1.9e10 MACs in the full model (2+2 layers, pre-LN, MLPs: 600 ms per step before the fused
# LayerNorm / MLP, 1.31x faster after it in `benchmarks/bench_ab.py`).
SECONDS_PER_MAC_FULL = 2.65e-11
SECONDS_PER_MAC_MLP = 1.6e-11
SECONDS_PER_MAC_DECODER = 7.4e-11
TOY2DS_TEXT = 10  # [BOS] question(6) [SEP] answer(2): circuits.tasks.toy2ds.Toy2DSTask.n_text
TOY2DS_BATCH = 256  # Toy2DSTask.default_batch_size (train.batch_size = null)


@dataclass(frozen=True)
class ResourceEstimate:
    """What training (and analysing) a `RunConfig` will need, from its numbers alone."""

    n_images: int  # in all splits of the world
    n_train_images: int  # the training set (train_single + train_pair)
    n_captions: int
    seq_len: int  # vision context: [CLS] + pixels
    data_bytes: int  # the splits as token tensors, and the lists they are built from
    train_bytes: int  # activations, gradients and optimizer state of one training step
    attention_bytes: int  # full attention patterns of one evaluation chunk (hooked forward)
    step_seconds: float  # one training step on one CPU thread (rough)
    train_hours: float  # all training steps, evaluation excluded (rough)

    @property
    def peak_bytes(self) -> int:
        return self.data_bytes + max(self.train_bytes, self.attention_bytes)


def estimate_resources(cfg: RunConfig) -> ResourceEstimate:
    """Rough memory and time a run will take, computed from the config alone (pure, instant).

    Counts follow `circuits.data.World`: every split's images, the training set of every step,
    the attention of one evaluation chunk, and multiply-accumulates per step for the time.
    """
    w, m, t = cfg.world, cfg.model, cfg.train
    n_held = w.n_labels - w.n_pair_labels
    ordered_train, ordered_held = w.n_pair_labels * (w.n_pair_labels - 1), n_held * (n_held - 1)
    if w.unseen_pairs == "heldout_combinations":  # training pairs also mix a training and a held-out label
        ordered_train += 2 * w.n_pair_labels * n_held
    n_pairs = n_position_pairs(w)
    n_train_pair = ordered_train * min(w.n_pair_positions, n_pairs)
    n_train = w.n_labels * w.n_single_positions + n_train_pair
    n_images = w.n_labels * w.n_pixels + ordered_train * n_pairs + ordered_held * n_pairs
    directions = 2 if w.captions == "bidirectional" else 1
    n_captions = w.n_labels + directions * (ordered_train + ordered_held)
    seq = 1 + w.n_pixels
    data_bytes = n_images * (seq * 8 + 200)  # int64 tokens, plus the Python tuples of the build
    batch = n_train if t.batch_size is None else min(t.batch_size, n_train)
    if m.kind == "prefix_lm":
        return _decoder_estimate(cfg, n_images, n_train, n_captions, batch)

    v, x = m.vision, m.text
    n_text = min(n_captions, ordered_train + w.n_pair_labels)
    train_floats = batch * seq * v.n_layers * _per_token(v) + n_text * 4 * x.n_layers * _per_token(x)
    train_bytes = 4 * 3 * train_floats + 4 * batch * n_text  # forward + backward + temporaries; logits
    chunk = min(EVAL_CHUNK, n_images)
    attention_bytes = 4 * chunk * v.n_heads * seq * seq * v.n_layers
    # forward + backward: layer 0's attention from the table, the rest at every position
    table_macs = 3 * (batch * seq * _attn_macs(v) + n_text * 4 * _attn_macs(x))
    full_macs = 3 * (v.n_layers - 1) * (batch * seq * _attn_macs(v)) + 3 * (x.n_layers - 1) * n_text * 4 * _attn_macs(x)
    mlp_macs = 3 * (batch * seq * v.n_layers * _mlp_macs(v) + n_text * 4 * x.n_layers * _mlp_macs(x))
    step_seconds = table_macs * SECONDS_PER_MAC + full_macs * SECONDS_PER_MAC_FULL + mlp_macs * SECONDS_PER_MAC_MLP
    return ResourceEstimate(
        n_images=n_images, n_train_images=n_train, n_captions=n_captions, seq_len=seq,
        data_bytes=data_bytes, train_bytes=train_bytes, attention_bytes=attention_bytes,
        step_seconds=step_seconds, train_hours=t.steps * step_seconds / 3600,
    )


def _per_token(enc: EncoderConfig) -> int:
    """Activation floats per token per layer."""
    return 4 * enc.n_heads * enc.d_head + 2 * enc.d_model + (0 if enc.attn_only else enc.d_mlp)


def _attn_macs(enc: EncoderConfig) -> int:
    """Multiply-accumulates per token of one attention layer (Q, K, V, O)."""
    return 4 * enc.d_model * enc.n_heads * enc.d_head


def _mlp_macs(enc: EncoderConfig) -> int:
    """Multiply-accumulates per token of one MLP (W_in, W_out)."""
    return 0 if enc.attn_only else 2 * enc.d_model * enc.d_mlp


def _macs(enc: EncoderConfig) -> int:
    """Multiply-accumulates per token per layer."""
    return _attn_macs(enc) + _mlp_macs(enc)


def _decoder_estimate(cfg: RunConfig, n_images: int, n_train: int, n_captions: int, batch: int) -> ResourceEstimate:
    """`estimate_resources` of a prefix-LM: one decoder over [vision tokens] + text, the text a
    caption of the relations world (counts given) or a toy 2DS question (counted here)."""
    d, t = cfg.model.decoder, cfg.train
    if cfg.task == "toy2ds":
        q = cfg.toy2ds
        n_k = q.max_objects - q.min_objects + 1
        n_train, pixels, text = n_k * q.n_train_per_k, q.n_pixels, TOY2DS_TEXT
        n_images = n_k * (q.n_train_per_k + q.n_test_per_k)
        n_captions = 6 * n_images  # questions: one per category per image
        batch = TOY2DS_BATCH if t.batch_size is None else min(t.batch_size, 6 * n_train)
    else:
        pixels, text = cfg.world.n_pixels, 4  # [BOS] w1 w2 w3
    seq = (d.pool_tokens or pixels) + text
    step_seconds = 3 * batch * seq * d.n_layers * _macs(d) * SECONDS_PER_MAC_DECODER
    return ResourceEstimate(
        n_images=n_images, n_train_images=n_train, n_captions=n_captions, seq_len=seq,
        data_bytes=n_images * (seq * 8 + 200), train_bytes=4 * 3 * batch * seq * d.n_layers * _per_token(d),
        attention_bytes=4 * min(EVAL_CHUNK, n_images) * d.n_heads * seq * seq * d.n_layers,
        step_seconds=step_seconds, train_hours=t.steps * step_seconds / 3600,
    )


def check_resources(cfg: RunConfig, memory_bytes: int | None) -> ResourceEstimate:
    """Raise `ConfigError` with the estimate when a run of `cfg` cannot be worth starting: more
    memory than `memory_bytes` (None: no memory check) or more than `MAX_STEPS` steps."""
    est = estimate_resources(cfg)
    too_big = memory_bytes is not None and est.peak_bytes > memory_bytes
    if too_big or est.n_images > MAX_IMAGES:
        limit = f"the {_gib(memory_bytes)} available" if too_big else f"the {MAX_IMAGES:,} images accepted"
        raise ConfigError(
            f"this world has {est.n_images:,} images of {est.seq_len} tokens and needs about {_gib(est.peak_bytes)}"
            f" of memory (attention of one batch: {_gib(est.attention_bytes)}), more than {limit};"
            " make world.width / world.height / world.n_labels smaller"
        )
    if cfg.train.steps > MAX_STEPS:
        raise ConfigError(
            f"train.steps={cfg.train.steps:,} would take about {est.train_hours:,.0f} hours (the default model"
            f" learns in 1,500 steps); at most {MAX_STEPS:,} steps are accepted"
        )
    return est


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def load_config_file(path: str) -> RunConfig:
    """Read a JSON config file (full or partial; missing fields take their defaults)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    return RunConfig.from_dict(data)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _split_override(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form key=value")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    node, parts = data, key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(parts[:i]) or "the config"
            options = ", ".join(sorted(node)) if isinstance(node, dict) else "none"
            raise ConfigError(f"unknown config key {key!r}: {where} has {options}")
        if i == len(parts) - 1:
            if isinstance(node[part], dict):
                raise ConfigError(f"config key {key!r} is a section; set one of its fields, e.g. {key}.{next(iter(node[part]))}")
            node[part] = value
        else:
            node = node[part]


def _build(cls: type, data: Any, prefix: str, base: Any = None) -> Any:
    """``base`` (default: ``cls()``) with the fields in ``data`` replaced; nested sections start
    from the parent's default, so a partial ``model.text`` section keeps the text encoder causal."""
    base = cls() if base is None else base
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or 'root'} must be an object")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown config key {prefix}{unknown[0]}: valid keys are {', '.join(sorted(known))}")
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        hint, value = hints[f.name], data[f.name]
        if dataclasses.is_dataclass(hint):
            kwargs[f.name] = _build(hint, value, prefix + f.name + ".", getattr(base, f.name))
        else:
            kwargs[f.name] = _coerce(value, hint, prefix + f.name)
    return dataclasses.replace(base, **kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check (and gently convert) one scalar against its annotation."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key} must be one of {', '.join(map(repr, args))} (got {value!r})")
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list (got {value!r})")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{key} must be true or false (got {value!r})")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or int(value) != value:
            raise ConfigError(f"{key} must be an integer (got {value!r})")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number (got {value!r})")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string (got {value!r})")
        return value
    return value
