"""Shared fixtures and random configurations for the specification tests.

Property tests that should hold for *any* sensible configuration take one of these arguments
and are parametrized automatically (see `pytest_generate_tests`):

* ``rand_world_cfg``: a random `WorldConfig` (width != 10, height 1 or 3, either caption mode);
* ``rand_run_cfg``: a random tiny `RunConfig` (small world, 1-2 layer encoders with every
  combination of LayerNorm / MLP / positional variant appearing at least once).

Everything is drawn from a fixed seed, so the parameter ids (and failures) are reproducible.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

from circuits.config import EncoderConfig, ModelConfig, RunConfig, TrainConfig, WorldConfig, n_position_pairs
from circuits.data import World
from circuits.models import HookedCLIP, HookedVisionEncoder
from circuits.tasks import Probe

torch.set_num_threads(2)

POSITIONALS = ("learned", "rotary", "none")


def _random_world(rng: random.Random, i: int) -> WorldConfig:
    width = rng.choice([3, 4, 5, 6, 7, 9])
    height = (1, 3)[i % 2]
    n_labels = rng.randint(3, 8)
    n_pair_labels = rng.randint(2, n_labels)
    n_pixels = width * height
    n_pairs = n_position_pairs(WorldConfig(width=width, height=height))
    return WorldConfig(
        width=width,
        height=height,
        n_labels=n_labels,
        n_pair_labels=n_pair_labels,
        n_single_positions=rng.randint(1, n_pixels - 1),
        n_pair_positions=rng.randint(1, n_pairs - 1),
        captions=("left", "bidirectional")[(i // 2) % 2],
        seed=rng.randint(0, 10_000),
    )


def _random_encoder(rng: random.Random, i: int, mask: str) -> EncoderConfig:
    positional = POSITIONALS[i % 3]
    d_head = rng.choice([2, 4, 6, 8]) if positional == "rotary" else rng.choice([3, 4, 5, 8])
    return EncoderConfig(
        n_layers=1 + (i % 2),
        n_heads=rng.randint(1, 5),
        d_model=rng.choice([16, 17, 23, 32, 48]),
        d_head=d_head,
        d_mlp=rng.choice([8, 24, 32]),
        attn_only=(i // 2) % 2 == 0,
        normalization=("none", "pre")[(i // 4) % 2],
        positional=positional,
        qkv_bias=rng.random() < 0.8,
        mask=mask,
        init_embed_std=rng.choice([0.1, 0.5, 1.0]),
        init_pos_std=rng.choice([0.1, 0.5, 1.0]),
    )


def _random_run(rng: random.Random, i: int) -> RunConfig:
    world = _random_world(rng, i)
    vision = _random_encoder(rng, i, mask="bidirectional")
    # the text encoder takes another combination so both sides see every variant
    text = _random_encoder(rng, i + 3, mask="causal")
    return RunConfig(world=world, model=ModelConfig(vision=vision, text=text), train=TrainConfig(seed=i, device="cpu"))


_RNG = random.Random(20240607)
RANDOM_WORLDS = [_random_world(_RNG, i) for i in range(6)]
RANDOM_RUNS = [_random_run(_RNG, i) for i in range(8)]

# every architectural variant is exercised by the random runs, on both sides
for _side in ("vision", "text"):
    _encs = [getattr(r.model, _side) for r in RANDOM_RUNS]
    assert {e.positional for e in _encs} == set(POSITIONALS)
    assert {e.n_layers for e in _encs} == {1, 2}
    assert {e.normalization for e in _encs} == {"none", "pre"}
    assert {e.attn_only for e in _encs} == {True, False}


def world_id(w: WorldConfig) -> str:
    return f"w{w.width}h{w.height}N{w.n_labels}p{w.n_pair_labels}-{w.captions[:3]}"


def run_id(r: RunConfig) -> str:
    def enc(e: EncoderConfig) -> str:
        return (
            f"L{e.n_layers}H{e.n_heads}m{e.d_model}d{e.d_head}{e.positional[:3]}"
            f"{'-ln' if e.normalization == 'pre' else ''}{'' if e.attn_only else '-mlp'}"
        )

    return f"{world_id(r.world)}_v{enc(r.model.vision)}_t{enc(r.model.text)}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "rand_world_cfg" in metafunc.fixturenames:
        metafunc.parametrize("rand_world_cfg", RANDOM_WORLDS, ids=[world_id(w) for w in RANDOM_WORLDS], scope="module")
    if "rand_run_cfg" in metafunc.fixturenames:
        metafunc.parametrize("rand_run_cfg", RANDOM_RUNS, ids=[run_id(r) for r in RANDOM_RUNS], scope="module")


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def default_world() -> World:
    return World(WorldConfig())


@pytest.fixture(scope="session")
def bidirectional_world() -> World:
    return World(WorldConfig(captions="bidirectional"))


def tiny_run_config(**world_overrides) -> RunConfig:
    """A small world and 1-layer attention-only encoders of width 16: trains in a second."""
    world = dict(width=6, n_labels=8, n_pair_labels=6, n_single_positions=3, n_pair_positions=4)
    world.update(world_overrides)
    enc = dict(n_layers=1, n_heads=2, d_model=16, d_head=8, d_mlp=16)
    return RunConfig(
        world=WorldConfig(**world),
        model=ModelConfig(vision=EncoderConfig(mask="bidirectional", **enc), text=EncoderConfig(mask="causal", **enc)),
        train=TrainConfig(steps=30, lr=3e-3, eval_every=10, device="cpu"),
    )


@pytest.fixture
def tiny_cfg() -> RunConfig:
    return tiny_run_config()


@pytest.fixture(scope="session")
def make_tiny_cfg():
    """`tiny_run_config` itself, for tests that need variants of the tiny world."""
    return tiny_run_config


def clip_for(cfg: RunConfig) -> tuple[HookedCLIP, World]:
    """An untrained CLIP pair for ``cfg`` (eval mode) and the world it is sized for."""
    world = World(cfg.world)
    return HookedCLIP.for_task(cfg, world).eval(), world


@pytest.fixture
def rand_world(rand_run_cfg: RunConfig) -> World:
    return World(rand_run_cfg.world)


@pytest.fixture
def rand_model(rand_run_cfg: RunConfig, rand_world: World) -> HookedCLIP:
    """An untrained CLIP pair for the random configuration, in eval mode."""
    return HookedCLIP.for_task(rand_run_cfg, rand_world).eval()


@pytest.fixture(scope="session")
def default_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """The default recipe (Sec. 2-3), trained once per test session and saved as a checkpoint
    (~40 s on 2 CPU cores); shared by the end-to-end tests of training, the CLI and the report."""
    from circuits.train import train_to_directory

    cfg = RunConfig().with_overrides({"train.device": "cpu"})
    out = tmp_path_factory.mktemp("default") / "run"
    train_to_directory(cfg, out, progress=False)
    return out


def assert_tree_close(actual, expected, rel: float = 1e-6, abs: float = 1e-9) -> None:
    """Nested lists / dicts of numbers equal up to float tolerance (pytest.approx is flat only)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), (actual, expected)
        for key in expected:
            assert_tree_close(actual[key], expected[key], rel, abs)
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(expected), (actual, expected)
        for a, e in zip(actual, expected):
            assert_tree_close(a, e, rel, abs)
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=rel, abs=abs)
    else:
        assert actual == expected


# ------------------------------------------------------------------ prefix-LM toy VLM
TINY_VLM = {
    "model.kind": "prefix_lm", "world.width": 6, "world.n_labels": 6, "world.n_pair_labels": 4,
    "world.n_single_positions": 4, "world.n_pair_positions": 8,
    "model.decoder.d_model": 32, "model.decoder.d_head": 8, "model.decoder.n_heads": 4,
    "train.steps": 300, "train.eval_every": 300, "train.lr": 3e-3, "train.device": "cpu",
}


def tiny_vlm_config(**overrides) -> RunConfig:
    """A 6-pixel world and a 2-layer width-32 prefix-LM: trains in a few seconds."""
    return RunConfig().with_overrides({**TINY_VLM, **overrides})


@pytest.fixture(scope="session")
def trained_vlm():
    """A `Run` of the tiny prefix-LM, trained once per session."""
    from circuits.train import train

    return train(tiny_vlm_config(), progress=False)


TINY_CLIP_FOR_VLM = {  # a CLIP on the tiny VLM's world: its vision encoder is a clip_tokens source
    "world.width": 6, "world.n_labels": 6, "world.n_pair_labels": 4, "world.n_single_positions": 4,
    "world.n_pair_positions": 8, "model.vision.d_model": 16, "model.vision.d_head": 4, "model.vision.n_heads": 2,
    "model.text.d_model": 16, "model.text.d_head": 4, "model.text.n_heads": 2,
    "train.steps": 20, "train.eval_every": 20, "train.lr": 3e-3, "train.device": "cpu",
}


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """A tiny CLIP trained for a few steps on the tiny VLM's world, saved as a checkpoint."""
    from circuits.train import train_to_directory

    out = tmp_path_factory.mktemp("clip_for_vlm") / "clip"
    train_to_directory(RunConfig().with_overrides(TINY_CLIP_FOR_VLM), out, progress=False)
    return out


@pytest.fixture(scope="session")
def trained_clip_vlm(tiny_clip_checkpoint, tmp_path_factory: pytest.TempPathFactory):
    """The tiny prefix-LM reading the tiny CLIP's tokens (clip_tokens), briefly trained and saved."""
    from circuits.train import train_to_directory

    cfg = tiny_vlm_config(**{"model.decoder.vision_source": "clip_tokens",
                             "model.decoder.vision_checkpoint": str(tiny_clip_checkpoint),
                             "train.steps": 60, "train.eval_every": 60})
    return train_to_directory(cfg, tmp_path_factory.mktemp("clip_vlm") / "run", progress=False)


# ------------------------------------------------------------- hand-built mechanisms (App. D, J)
def synthetic_history(step_losses: bool = True) -> list[dict]:
    """Evaluations every 10 steps to 200: single-object reaches 1.0 at step 50 (after a false
    start at 30), seen-pair at 100, unseen-pair 0.9 x its final 0.95 at 150; the per-step loss
    decreases as 1/step except a jump to 3x its running minimum at step 55."""
    rows = []
    for step in range(10, 201, 10):
        row = {"step": step, "single_object": 1.0 if step >= 50 or step == 30 else 0.5,
               "seen_pair": 1.0 if step >= 100 else 0.3, "unseen_pair": 0.95 if step >= 150 else 0.5}
        losses = [1.0 / s for s in range(step - 9, step + 1)]
        if step == 60:
            losses[4] = 3.0 / 54  # step 55 (steps 51..60): running minimum 1/54
        row["loss"] = losses[-1]
        if step_losses:
            row["step_losses"] = losses
        rows.append(row)
    return rows


def rotation(angle: float) -> torch.Tensor:  # column-vector convention
    return torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


@pytest.fixture
def rotary_2d():
    """A 1-head rotary encoder with d_model = d_head = 2 (one frequency: angle m at position m),
    vocabulary 0 background, 1-3 labels, 4 [CLS], and weights set by hand."""
    cfg = EncoderConfig(n_heads=1, d_model=2, d_head=2, positional="rotary", mask="bidirectional")
    enc = HookedVisionEncoder(cfg, d_vocab=5, n_ctx=5).eval()
    with torch.no_grad():
        enc.embed.W_E.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.2], [0.3, 1.0], [-0.7, 0.5], [0.4, -0.9]]))
        attn = enc.blocks[0].attn
        attn.W_Q.copy_(torch.tensor([[[1.0, 0.5], [-0.2, 1.0]]]))
        attn.W_K.copy_(torch.tensor([[[0.8, -0.3], [0.6, 1.1]]]))
        attn.b_Q.copy_(torch.tensor([[0.1, -0.4]]))
        attn.b_K.copy_(torch.tensor([[0.9, 0.25]]))
    items = [(a, b, i, j) for a, b in itertools.permutations([1, 2, 3], 2) for i, j in itertools.combinations(range(1, 5), 2)]
    tokens = torch.zeros(len(items), 5, dtype=torch.long)
    tokens[:, 0] = 4
    for n, (a, b, i, j) in enumerate(items):
        tokens[n, i], tokens[n, j] = a, b
    probe = Probe(tokens, torch.tensor([it[2] for it in items]), torch.tensor([it[3] for it in items]),
                  torch.tensor([-1, 0, 1, 2, 3]))
    return enc, probe, items


# ------------------------------------------------------------------------------ the CLI in-process
def cli_run(*args) -> str:
    """``lenscli ARGS`` in this process (typer's CliRunner); must succeed; returns its stdout."""
    from typer.testing import CliRunner

    from lenscli.app import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result.stdout


def cli_user_error(*args) -> str:
    """``lenscli ARGS`` that must refuse its input: exit 2 and one ``error: ...`` line; returns it."""
    from typer.testing import CliRunner

    from lenscli.app import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def ee_ep_model(cfg: RunConfig, label_weight, position_slope: float):
    """A pair whose vision [CLS] score of an object at key m is label_weight(label) + position_slope * m,
    through EE and EP only (every other term zero); returns the model and its unseen-pair probe."""
    model, world = clip_for(cfg)
    vis = model.vision
    with torch.no_grad():
        attn = vis.blocks[0].attn
        for p in (attn.W_Q, attn.W_K, attn.b_Q, attn.b_K):
            p.zero_()
        vis.embed.W_E[:, :3] = 0.0
        vis.pos_embed.W_pos[:, :3] = 0.0
        vis.embed.W_E[world.vocab.cls, 0] = 1.0
        labels = torch.arange(1, world.cfg.n_labels + 1)
        vis.embed.W_E[labels, 2] = label_weight(labels.float())
        vis.pos_embed.W_pos[:, 1] = position_slope * torch.arange(vis.n_ctx, dtype=torch.float)
        attn.W_Q[:, 0, 0] = attn.cfg.d_head ** 0.5
        attn.W_K[:, 1, 0] = attn.W_K[:, 2, 0] = 1.0
    return model, world.probe("unseen_pair")
