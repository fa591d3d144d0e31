"""A tiny sweep spec shared by the sweep tests."""

from __future__ import annotations

from circuits.sweep import SweepSpec


def tiny_spec(steps=20, **grid) -> SweepSpec:
    """`tiny_run_config` (tests/conftest.py) as a spec: trains in a second."""
    base = {"world.width": 6, "world.n_labels": 8, "world.n_pair_labels": 6,
            "world.n_single_positions": 3, "world.n_pair_positions": 4, "train.lr": 3e-3, "train.eval_every": 10,
            "train.steps": steps, "train.device": "cpu"}
    for side in ("vision", "text"):
        base.update({f"model.{side}.d_model": 16, f"model.{side}.d_head": 8, f"model.{side}.n_heads": 2, f"model.{side}.d_mlp": 16})
    return SweepSpec.from_dict({"seeds": 2, "set": base, "grid": grid or {"world.n_pair_positions": [2, 4]}})
