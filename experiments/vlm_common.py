"""Shared plumbing of the prefix-LM toy VLM reproductions (app-o, norm-sweep, permutation, pooling,
rope-probe).

The full profile is the App. O model as docs/vlm.md measures it (default world D=10, N=20,
N_pair=15; 2-layer attention-only decoder, d_model 128, 4 heads; minibatches of 128 for 400
steps: CHOICE, App. O's own setting is lost). The quick profile is a 6-pixel, 6-label world and
a width-16 decoder trained for a few dozen steps: a smoke test of the pipeline (≤ 3 s), not a
reproduction. CLIP-token sources read a CLIP trained with the library defaults on the same
world, cached with `circuits.train.train_or_load` under runs/vlm-clip/ (full profile) or a
temporary directory (quick profile).
"""

from __future__ import annotations

import statistics
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from worlds_common import ROOT, device, pct  # noqa: F401  (re-exported to the VLM entries)

from circuits.config import RunConfig

QUICK_WORLD = {"world.width": 6, "world.n_labels": 6, "world.n_pair_labels": 4, "world.n_single_positions": 4,
               "world.n_pair_positions": 8}
FULL_VLM = {"model.kind": "prefix_lm", "train.batch_size": 128, "train.steps": 400, "train.eval_every": 400}
QUICK_VLM = {**QUICK_WORLD, "model.kind": "prefix_lm", "model.decoder.d_model": 16, "model.decoder.d_head": 4,
             "model.decoder.n_heads": 2, "train.steps": 20, "train.eval_every": 20, "train.lr": 3e-3}
QUICK_CLIP = {**QUICK_WORLD, "model.vision.d_model": 16, "model.vision.d_head": 4, "model.vision.n_heads": 2,
              "model.text.d_model": 16, "model.text.d_head": 4, "model.text.n_heads": 2,
              "train.steps": 10, "train.eval_every": 10, "train.lr": 3e-3}


def vlm_config(overrides: dict, quick: bool, seed: int = 0) -> RunConfig:
    """The App. O prefix-LM of the profile, then ``overrides``, then the seed."""
    return RunConfig().with_overrides({**(QUICK_VLM if quick else FULL_VLM), **overrides, "train.device": device(), "train.seed": seed})


def clip_config(quick: bool, seed: int = 0) -> RunConfig:
    """The CLIP whose vision encoder gives the clip_tokens (library defaults on the same world)."""
    return RunConfig().with_overrides({**(QUICK_CLIP if quick else {}), "train.device": device(), "train.seed": seed})


@contextmanager
def clip_checkpoints(quick: bool) -> Iterator:
    """``get(seed) -> path``: a CLIP checkpoint per seed, trained once (`train_or_load`)."""
    from circuits.train import train_or_load

    with tempfile.TemporaryDirectory(prefix="vlm-clip-") if quick else _nothing() as tmp:
        root = Path(tmp) if quick else ROOT / "runs" / "vlm-clip"

        def get(seed: int) -> str:
            path = root / f"seed{seed}"
            train_or_load(clip_config(quick, seed), path, progress=False)
            return str(path)

        yield get


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def source_overrides(source: str, clip_path: str | None) -> dict:
    """Config overrides of a vision source: frozen_random, or clip_tokens reading ``clip_path``."""
    if source == "frozen_random":
        return {}
    return {"model.decoder.vision_source": source, "model.decoder.vision_checkpoint": clip_path}


def num(values: list[float], fmt: str = "{:.3f}") -> str:
    values = [v for v in values if v == v]
    if not values:
        return "n/a"
    m = statistics.mean(values)
    return fmt.format(m) if len(values) == 1 else f"{fmt.format(m)} ± {fmt.replace('+', '').format(statistics.stdev(values))}"
