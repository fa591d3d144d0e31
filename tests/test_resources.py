"""Threads, devices and the size of a run are checked from the config before any work starts."""

from __future__ import annotations

import pytest
import torch

from circuits.config import MAX_STEPS, RunConfig, check_resources, estimate_resources
from circuits.errors import ConfigError
from circuits.runtime import check_device, set_threads, threads

GIB = 2**30


def test_the_default_run_fits_in_one_gib() -> None:
    assert estimate_resources(RunConfig()).peak_bytes < GIB


def test_the_estimate_counts_the_images_of_every_split() -> None:
    from circuits.data import World

    cfg = RunConfig().with_overrides(["world.width=7", "world.n_labels=6", "world.n_pair_labels=4"])
    world = World(cfg.world)
    est = estimate_resources(cfg)
    assert est.n_images == sum(len(world[name]) for name in world.summary() if name != "captions")
    assert est.n_train_images == len(world.train)
    assert est.n_captions == world.n_captions


def test_a_world_too_big_for_memory_is_refused_with_the_estimate() -> None:
    cfg = RunConfig().with_overrides(["world.width=400"])
    with pytest.raises(ConfigError, match=r"18,362,000 images of 401 tokens and needs about [\d.,]+ GiB"):
        check_resources(cfg, memory_bytes=64 * GIB)


def test_a_step_count_far_beyond_use_is_refused_with_hours() -> None:
    cfg = RunConfig().with_overrides({"train.steps": MAX_STEPS + 1})
    with pytest.raises(ConfigError, match=r"would take about [\d,]+ hours"):
        check_resources(cfg, memory_bytes=None)


def test_train_threads_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="train.threads must be >= 1"):
        RunConfig().with_overrides({"train.threads": 0})


def test_threads_block_restores_the_previous_count() -> None:
    before = torch.get_num_threads()
    with threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before


def test_set_threads_returns_the_previous_count() -> None:
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == before
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="CUDA is not available"):
        check_device("cuda")


def test_a_toy2ds_estimate_counts_its_own_world_and_decoder() -> None:
    from circuits.data.toy2ds import Toy2DSWorld

    small = {"task": "toy2ds", "model.kind": "prefix_lm", "toy2ds.n_train_per_k": 30, "toy2ds.n_test_per_k": 5}
    cfg = RunConfig().with_overrides(small)
    world = Toy2DSWorld(cfg.toy2ds)
    est = estimate_resources(cfg)
    assert (est.n_images, est.n_train_images) == (len(world.train.pixels) + len(world.test.pixels), len(world.train.pixels))
    assert est.n_captions == len(world.train) + len(world.test)
    wider = estimate_resources(RunConfig().with_overrides({**small, "model.decoder.d_model": 256}))
    assert wider.step_seconds > est.step_seconds  # the decoder's size, not the CLIP encoders', sets the time
