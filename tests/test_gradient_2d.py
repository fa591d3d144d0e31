"""App. K's 2D gradient score (A12) on hand-built profiles and a 2D model."""

from __future__ import annotations

import pytest
import torch

from circuits.errors import CircuitsError
from circuits.stats import fit_plane, gradient_2d


def _grid(w: int = 4, h: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    k = torch.arange(w * h)
    return (k % w).float(), (k // w).float()


def test_fit_plane_recovers_a_known_plane_exactly():
    col, row = _grid()
    values = torch.stack([2.0 * col - 0.5 * row + 3.0, -1.0 * col + 0.0 * row - 2.0])
    a, b, c, r2 = fit_plane(values, col, row)
    assert a.tolist() == pytest.approx([2.0, -1.0], abs=1e-5)
    assert b.tolist() == pytest.approx([-0.5, 0.0], abs=1e-5)
    assert c.tolist() == pytest.approx([3.0, -2.0], abs=1e-5)
    assert r2.tolist() == pytest.approx([1.0, 1.0], abs=1e-6)


def test_fit_plane_r2_is_zero_for_a_profile_orthogonal_to_both_axes():
    col, row = _grid()
    # a checkerboard: uncorrelated with column and row on the 4 x 4 grid
    values = ((col + row) % 2 * 2 - 1)[None]
    a, b, _, r2 = fit_plane(values, col, row)
    assert abs(a.item()) < 1e-6 and abs(b.item()) < 1e-6 and r2.item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_2d_on_a_2d_model_matches_the_fit_of_the_mean_profile(make_tiny_cfg):
    from circuits.data import World
    from circuits.models import HookedCLIP
    from circuits.stats import term_gradient

    cfg = make_tiny_cfg(width=3, height=3, n_pair_positions=3)
    world = World(cfg.world)
    torch.manual_seed(0)
    model = HookedCLIP.for_task(cfg, world).eval()
    probe = world.probe("unseen_pair")
    out = gradient_2d(model, probe, terms=("EP",))
    assert len(out["EP"].col) == cfg.model.vision.n_heads
    # against the column profile of term_gradient: on a grid the column average of the plane
    # fit is the fitted slope in column when the rows are balanced (they are: all 3 x 3 keys)
    profile = torch.tensor(term_gradient(model, probe, terms=("EP",))["EP"].profile)  # [head, columns]
    slope = ((profile - profile.mean(1, keepdim=True)) * torch.tensor([-1.0, 0.0, 1.0])).sum(1) / 2
    assert out["EP"].col == pytest.approx(slope.tolist(), rel=1e-4, abs=1e-6)


def test_gradient_2d_needs_row_coordinates(make_tiny_cfg):
    from dataclasses import replace

    from circuits.data import World
    from circuits.models import HookedCLIP

    cfg = make_tiny_cfg()
    world = World(cfg.world)
    probe = replace(world.probe("unseen_pair"), rows=None)
    with pytest.raises(CircuitsError, match="row coordinates"):
        gradient_2d(HookedCLIP.for_task(cfg, world).eval(), probe)
