"""Specification of the Ray backend against a real local Ray (2 CPUs): the same runs and the
same results table as the local executor."""

from __future__ import annotations

import pytest

from circuits.sweep import load_results, run_sweep

from sweep_helpers import tiny_spec

ray = pytest.importorskip("ray", reason="the ray extra (pip install -e '.[ray]') is installed in CI")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_the_ray_backend_writes_the_results_of_the_local_executor(local_ray, tmp_path):
    spec = tiny_spec(steps=10, **{"world.n_pair_positions": [2]})
    summary = run_sweep(spec, tmp_path / "ray", backend="ray", progress=False)
    run_sweep(spec, tmp_path / "local", jobs=1, progress=False)
    assert summary.ok and summary.trained == 2
    cols = ["run_id", "status", "single_object", "seen_pair", "unseen_pair", "loss"]
    a = load_results(tmp_path / "ray")[cols].sort_values("run_id").reset_index(drop=True)
    b = load_results(tmp_path / "local")[cols].sort_values("run_id").reset_index(drop=True)
    assert a.equals(b)
