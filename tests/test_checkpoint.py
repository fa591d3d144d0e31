"""Checkpoints: bit-exact round trips, atomic writes that never clobber by accident, and loads
that fail with one clear line instead of unpickling or half-loading."""

from __future__ import annotations

import json
import pickle
import re
import struct
from pathlib import Path

import pytest
import torch

import circuits
from circuits.checkpoint import Run, load, read_metrics, save
from conftest import clip_for
from circuits.config import RunConfig
from circuits.errors import CheckpointError, CircuitsError
from circuits.models import HookedCLIP

SMALL = [
    "model.vision.d_model=16", "model.vision.d_head=4", "model.vision.n_heads=2",
    "model.text.d_model=12", "model.text.d_head=4", "model.text.n_heads=2",
    "world.n_labels=8", "world.n_pair_labels=4", "train.device=cpu",
]
RICH = [  # every optional part: MLPs, LayerNorms, rotary buffers, two layers, bidirectional captions
    *SMALL, "model.vision.attn_only=false", "model.vision.d_mlp=8", "model.vision.normalization=pre",
    "model.vision.positional=rotary", "model.text.n_layers=2", "world.captions=bidirectional",
]


def small_cfg(*extra: str) -> RunConfig:
    return RunConfig().with_overrides([*SMALL, *extra])


def perturbed_run(cfg: RunConfig, seed: int = 1, history: list[dict] | None = None) -> Run:
    """A run whose weights differ from the deterministic init, so loading cannot pass by rebuilding it."""
    model, world = clip_for(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen))
    return Run(cfg, model, world, history or [])


def outputs(run: Run) -> torch.Tensor:
    images = run.task["unseen_pair"].images[:32]
    with torch.no_grad():
        return run.model(images, run.task.captions)


def siblings(path: Path) -> list[str]:
    """Everything next to `path` other than itself (temporary or aside directories left behind)."""
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


@pytest.mark.parametrize("overrides", [SMALL, RICH], ids=["small", "rich"])
def test_round_trip_is_bit_exact(tmp_path: Path, overrides: list[str]) -> None:
    cfg = RunConfig().with_overrides(overrides)
    run = perturbed_run(cfg)
    history = [{"step": 1, "loss": 2.5, "unseen_pair": 0.25}, {"step": 2, "loss": 1.5, "unseen_pair": float("nan")}]

    run.history = history
    path = circuits.save(run, tmp_path / "ckpt")
    loaded = circuits.load(path)

    assert path == (tmp_path / "ckpt").absolute()
    assert loaded.cfg == run.cfg and loaded.task.cfg == run.cfg.world and loaded.path == path
    assert not loaded.model.training
    expected, got = run.model.state_dict(), loaded.model.state_dict()
    assert expected.keys() == got.keys()
    for name in expected:
        assert got[name].dtype == expected[name].dtype, name
        assert torch.equal(got[name], expected[name]), name
    assert torch.equal(outputs(loaded), outputs(run))
    assert not torch.equal(outputs(Run(cfg, *clip_for(cfg))), outputs(run))  # the load really replaced the init
    rows = read_metrics(path)
    assert rows[0] == history[0] and rows[1]["step"] == 2 and rows[1]["unseen_pair"] != rows[1]["unseen_pair"]  # NaN


def test_checkpoint_layout(tmp_path: Path) -> None:
    run = perturbed_run(small_cfg())
    path = save(run, tmp_path / "ckpt")

    assert sorted(p.name for p in path.iterdir()) == ["config.json", "metrics.jsonl", "model.safetensors"]
    config = json.loads((path / "config.json").read_text())
    assert config == json.loads(run.cfg.to_json())
    assert {"format_version", "world", "model", "train"} <= config.keys()
    assert (path / "metrics.jsonl").read_text() == ""
    assert read_metrics(path) == []
    # plain safetensors: an 8-byte little-endian header length, a JSON header naming every tensor, raw bytes
    raw = (path / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    assert header.keys() - {"__metadata__"} == run.model.state_dict().keys()
    assert siblings(path) == []


def test_save_refuses_non_empty_directory_without_force(tmp_path: Path) -> None:
    first = perturbed_run(small_cfg(), seed=1)
    path = save(first, tmp_path / "ckpt")
    before = {p.name: p.read_bytes() for p in path.iterdir()}

    with pytest.raises(CheckpointError, match="exists and is not empty; pass force=True"):
        save(perturbed_run(small_cfg(), seed=2), path)

    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert siblings(path) == []


def test_force_replaces_a_checkpoint(tmp_path: Path) -> None:
    path = save(perturbed_run(small_cfg(), seed=1, history=[{"step": 1}]), tmp_path / "ckpt")
    second = perturbed_run(small_cfg("world.seed=3"), seed=2)

    save(second, path, force=True)

    loaded = load(path)
    assert loaded.cfg.world.seed == 3
    assert torch.equal(outputs(loaded), outputs(second))
    assert read_metrics(path) == []
    assert siblings(path) == []


def test_force_never_deletes_a_directory_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "notes"
    target.mkdir()
    (target / "keep.txt").write_text("precious")

    with pytest.raises(CheckpointError, match="not a checkpoint"):
        save(perturbed_run(small_cfg()), target, force=True)

    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "precious"
    assert siblings(target) == []


def test_save_reuses_an_empty_directory_and_creates_parents(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    run = perturbed_run(small_cfg())

    save(run, tmp_path / "empty")
    save(run, tmp_path / "a" / "b" / "ckpt")

    assert torch.equal(outputs(load(tmp_path / "empty")), outputs(run))
    assert torch.equal(outputs(load(tmp_path / "a" / "b" / "ckpt")), outputs(run))


def test_save_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(CheckpointError, match="not a directory"):
        save(perturbed_run(small_cfg()), target, force=True)
    assert target.read_text() == "x"


def test_failed_save_leaves_old_checkpoint_and_no_temporary_directory(tmp_path: Path, monkeypatch) -> None:
    first = perturbed_run(small_cfg(), seed=1)
    path = save(first, tmp_path / "ckpt")

    def broken(cfg: RunConfig, model: HookedCLIP, directory: Path) -> None:
        (directory / "config.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr("circuits.checkpoint.write_model", broken)
    with pytest.raises(OSError, match="disk full"):
        save(perturbed_run(small_cfg(), seed=2), path, force=True)

    assert torch.equal(outputs(load(path)), outputs(first))
    assert siblings(path) == []


# --------------------------------------------------------------------------- load errors
@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    return save(perturbed_run(small_cfg(), history=[{"step": 1}]), tmp_path / "ckpt")


def load_error(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def edit_config(path: Path, key: str, value: object) -> None:
    """Set dotted `key` of the checkpoint's config.json to `value` (no validation)."""
    config = json.loads((path / "config.json").read_text())
    *parents, last = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[last] = value
    (path / "config.json").write_text(json.dumps(config))


def test_load_missing_directory(tmp_path: Path) -> None:
    assert "does not exist" in load_error(tmp_path / "nowhere")


def test_load_file_instead_of_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert "not a directory" in load_error(tmp_path / "file")


def test_load_missing_config(ckpt: Path) -> None:
    (ckpt / "config.json").unlink()
    assert "config.json is missing" in load_error(ckpt)


def test_load_config_not_json(ckpt: Path) -> None:
    (ckpt / "config.json").write_text("{not json")
    assert "config.json is not valid JSON" in load_error(ckpt)


def test_load_invalid_config(ckpt: Path) -> None:
    edit_config(ckpt, "world.n_pair_labels", 99)
    message = load_error(ckpt)
    assert "invalid config" in message and "world.n_pair_labels" in message


def test_load_missing_weights(ckpt: Path) -> None:
    (ckpt / "model.safetensors").unlink()
    assert "model.safetensors is missing" in load_error(ckpt)


@pytest.mark.parametrize("payload", [b"", b"garbage" * 50, bytes(range(256)) * 4], ids=["empty", "text", "binary"])
def test_load_corrupt_weights(ckpt: Path, payload: bytes) -> None:
    (ckpt / "model.safetensors").write_bytes(payload)
    assert "model.safetensors is not a valid safetensors file" in load_error(ckpt)


def test_load_truncated_weights(ckpt: Path) -> None:
    file = ckpt / "model.safetensors"
    file.write_bytes(file.read_bytes()[:-10])
    assert "not a valid safetensors file" in load_error(ckpt)


class _Payload:
    """Unpickling this creates a file: proof that a loader executed pickle code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_load_never_unpickles(ckpt: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (ckpt / "model.safetensors").write_bytes(pickle.dumps(_Payload(marker)))
    assert "not a valid safetensors file" in load_error(ckpt)
    assert not marker.exists()


def test_load_rejects_a_torch_save_file(ckpt: Path) -> None:
    torch.save(clip_for(small_cfg())[0].state_dict(), ckpt / "model.safetensors")
    assert "not a valid safetensors file" in load_error(ckpt)


def test_load_shape_mismatch_names_the_tensor(ckpt: Path) -> None:
    state = clip_for(small_cfg())[0].state_dict()
    edit_config(ckpt, "model.vision.d_model", 24)
    message = load_error(ckpt)
    found = re.search(r"does not match .*config\.json: (\S+) has shape \((.*)\), the config needs \((.*)\)", message)
    assert found, message
    name, saved, needed = found.groups()
    assert name in state and tuple(state[name].shape) == tuple(int(x) for x in saved.split(",") if x.strip())
    assert "24" in needed


def test_load_missing_tensor_names_it(ckpt: Path) -> None:
    edit_config(ckpt, "model.text.n_layers", 2)
    assert re.search(r"tensor text\.blocks\.1\.\S+ is missing", load_error(ckpt))
    edit_config(ckpt, "model.text.n_layers", 1)
    edit_config(ckpt, "model.vision.attn_only", False)
    assert re.search(r"tensor vision\.blocks\.0\.mlp\.\S+ is missing", load_error(ckpt))


def test_load_unexpected_tensor_names_it(tmp_path: Path) -> None:
    path = save(perturbed_run(small_cfg("model.vision.attn_only=false", "model.vision.d_mlp=8")), tmp_path / "ckpt")
    edit_config(path, "model.vision.attn_only", True)
    assert re.search(r"unexpected tensor vision\.blocks\.0\.mlp\.\w+ \(and 3 more\)", load_error(path))


def test_load_device(ckpt: Path) -> None:
    assert load(ckpt).model.device == torch.device("cpu")
    assert load(ckpt, device="auto").model.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(CircuitsError, match="device"):
        load(ckpt, device="toaster")


def test_read_metrics_errors(ckpt: Path, tmp_path: Path) -> None:
    (ckpt / "metrics.jsonl").write_text('{"step": 1}\n\n[1, 2]\n')
    with pytest.raises(CheckpointError, match="line 3 is not a JSON object"):
        read_metrics(ckpt)
    (ckpt / "metrics.jsonl").write_text('{"step": 1}\n{oops\n')
    with pytest.raises(CheckpointError, match="line 2 is not valid JSON"):
        read_metrics(ckpt)
    (ckpt / "metrics.jsonl").unlink()
    with pytest.raises(CheckpointError, match="metrics.jsonl is missing"):
        read_metrics(ckpt)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_metrics(tmp_path / "nowhere")
