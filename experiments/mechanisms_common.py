"""Shared plumbing of the mechanism entries (fig7, fig6, app-d, app-e-f, app-g, app-j, app-r).

Models are trained once and reused by every entry that needs the same config: `trained` goes
through `circuits.train.train_or_load` into a cache directory keyed by the resolved config
(``runs/models/<kind>-s<seed>-<hash>``; a second entry, or a second run, loads the checkpoint).
The quick profiles share a per-process temporary cache instead, so a test session trains each
tiny model once and leaves nothing behind.

Model kinds (``KINDS``):

* ``default``: the library defaults (1 layer, 4 heads, attention-only, learned positions);
* ``rotary``: vision ``positional = rotary`` (App. J.2), text unchanged;
* ``rotary_nobias``: the same without Q/K/V biases (the spec's control for Mechanism 2, A11.2);
* ``full``: the LayerNorm + MLP model of Fig. 3, read from ``experiments/fig3.toml``'s
  ``[set]`` (2 layers, pre-LN, GELU MLP, dropout 0.1), with ``train.batch_size = 256``
  (CHOICE: full-batch training of this model takes ~25 min per seed on our shared 2-core
  machine; the paper trained with minibatches);
* ``minibatch``: the default model with ``train.batch_size = 256`` (App. D's control).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from worlds_common import ROOT, config, entry, mean_std, pct, reproduce_main  # noqa: F401  (re-exported for the entries)

from circuits.checkpoint import Run
from circuits.train import train_or_load

MODELS = ROOT / "runs" / "models"  # the full profile's model cache (untracked)
_quick_cache: Path | None = None


def _fig3_model() -> dict:
    """The model settings of Fig. 3's full model (``experiments/fig3.toml`` ``[set]``, model keys only)."""
    from circuits.sweep.spec import SweepSpec

    spec = SweepSpec.load(ROOT / "experiments" / "fig3.toml")
    return {k: v for k, v in spec.set.items() if k.startswith("model.")}


KINDS: dict[str, dict] = {
    "default": {},
    "rotary": {"model.vision.positional": "rotary"},
    "rotary_nobias": {"model.vision.positional": "rotary", "model.vision.qkv_bias": False},
    "full": {**_fig3_model(), "train.batch_size": 256},
    "minibatch": {"train.batch_size": 256},
}
# quick profile: a narrow vision MLP and the default text encoder (App. R reads the vision encoder only), and
# fewer steps than worlds_common.QUICK (7 entries run in CI; a smoke test of the pipeline, not a reproduction)
QUICK_KINDS = {"full": {"model.vision.d_mlp": 64, "model.text.n_layers": 1, "model.text.normalization": "none",
                        "model.text.attn_only": True, "model.text.dropout": 0.0}}
QUICK_STEPS = {"train.steps": 20, "train.eval_every": 10}


def cache_dir(quick: bool) -> Path:
    """``runs/models`` for the full profile; one temporary directory per process for the quick one."""
    global _quick_cache
    if not quick:
        return MODELS
    if _quick_cache is None:
        _quick_cache = Path(tempfile.mkdtemp(prefix="circuits-quick-models-"))
        atexit.register(shutil.rmtree, _quick_cache, True)
    return _quick_cache


def model_config(kind: str, quick: bool, seed: int, overrides: dict | None = None):
    """The resolved config of model ``kind`` (then ``overrides``) at ``seed`` (train and world seed)."""
    quick_kind = QUICK_KINDS.get(kind, {}) if quick else {}
    cfg = config({**KINDS[kind], **quick_kind, **(overrides or {}), "world.seed": seed}, quick, seed)
    return cfg.with_overrides(QUICK_STEPS) if quick else cfg


def config_key(cfg) -> str:
    """The cache key of a config: its sweep run id (thread count and device left out: the same
    recipe, one cache entry)."""
    from circuits.sweep.spec import run_id

    return run_id(cfg)


def trained(kind: str, quick: bool, seed: int, overrides: dict | None = None) -> Run:
    """The checkpointed model ``kind`` (then ``overrides``) at ``seed``: loaded from the cache, or trained into it."""
    return _trained(kind, quick, seed, overrides)[0]


def trained_dir(kind: str, quick: bool, seed: int, overrides: dict | None = None) -> Path:
    """The checkpoint directory of `trained` (trained first if it is not there): for a model that
    another config reads by path, e.g. ``model.decoder.vision_checkpoint``."""
    return _trained(kind, quick, seed, overrides)[1]


def _trained(kind: str, quick: bool, seed: int, overrides: dict | None) -> tuple[Run, Path]:
    cfg = model_config(kind, quick, seed, overrides)
    directory = cache_dir(quick) / f"{kind}-s{seed}-{config_key(cfg)}"
    run, _ = train_or_load(cfg, directory, progress=False)
    return run, directory


def f(x, digits: int = 2) -> str:
    """A number for a table (n/a for None / NaN)."""
    return "n/a" if x is None or x != x else f"{x:.{digits}f}"


def heads(values, digits: int = 2, sep: str = " · ") -> str:
    """Per-head values as one table cell."""
    return "n/a" if values is None else sep.join(f(v, digits) for v in values)


def fraction(flags: list[bool]) -> str:
    """``k/n`` of true flags."""
    return f"{sum(bool(x) for x in flags)}/{len(flags)}"

