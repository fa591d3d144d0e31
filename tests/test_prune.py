"""Head pruning with continued training (App. P, A14)."""

from __future__ import annotations

import pytest
import torch

from circuits.checkpoint import Run
from circuits.data import World
from circuits.errors import CircuitsError
from circuits.models import HookedCLIP
from circuits.prune import Pruning, prune, prune_and_retrain


def _run(cfg) -> Run:
    torch.manual_seed(0)
    world = World(cfg.world)
    model = HookedCLIP.for_task(cfg, world).eval()
    with torch.no_grad():  # non-zero biases so that a forgotten b_V slice would show
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return Run(cfg, model, world)


@pytest.fixture
def run4(make_tiny_cfg) -> Run:
    cfg = make_tiny_cfg().with_overrides({"model.vision.n_heads": 4, "train.steps": 6, "train.eval_every": 3,
                                          "train.weight_decay": 0.5})
    return _run(cfg)


def test_pruned_model_equals_the_original_with_the_other_heads_hook_z_zeroed(run4):
    model, world = run4.model, run4.task
    images = world["unseen_pair"].images
    pruned = prune(model, Pruning(keep=(0, 2)))

    def zero_heads(z, hook):
        z = z.clone()
        z[:, :, [1, 3]] = 0.0  # [batch, pos, head, d_head]
        return z

    with torch.no_grad():
        want = model.vision.run_with_hooks(images, fwd_hooks=[("blocks.0.attn.hook_z", zero_heads)])
        got = pruned.vision(images)
        unpruned = model.vision(images)
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, unpruned, atol=1e-3)  # the hook did remove something


def test_continued_training_leaves_pruned_heads_exactly_zero_and_trains_the_kept_ones(run4):
    result = prune_and_retrain(run4, keep=(1,), steps=6)
    attn = result.run.model.vision.blocks[0].attn
    start = run4.model.vision.blocks[0].attn
    for name in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V"):
        param = getattr(attn, name)
        assert bool((param[[0, 2, 3]] == 0).all()), name
    assert not torch.equal(attn.W_V[1], start.W_V[1])  # the kept head did train
    assert len(result.run.history) == 2 and result.steps == 6


def test_before_is_the_pruned_model_evaluated_without_training(run4):
    from circuits.evaluation import evaluate

    result = prune_and_retrain(run4, keep=(0, 3), steps=0)
    want = evaluate(prune(run4.model, Pruning(keep=(0, 3))), run4.task)
    assert result.before == want == result.after
    assert result.original == evaluate(run4.model, run4.task)


@pytest.mark.parametrize(
    "keep,needle",
    [((4,), "--keep names head 4, but the vision encoder has heads 0..3"), ((), "at least one head"),
     ((0, 1, 2, 3), "keeps all 4 heads")],
)
def test_bad_keep_is_a_one_line_error(run4, keep, needle):
    with pytest.raises(CircuitsError, match=needle):
        prune(run4.model, Pruning(keep=keep))


def test_a_trained_run_can_be_pruned_and_retrained(make_tiny_cfg):
    from circuits.train import train

    cfg = make_tiny_cfg().with_overrides({"model.vision.n_heads": 3, "train.steps": 2, "train.eval_every": 2})
    run = train(cfg, progress=False)  # the pooled training path leaves index plans cached on the model
    result = prune_and_retrain(run, keep=(0, 1), steps=2)
    assert bool((result.run.model.vision.blocks[0].attn.W_O[2] == 0).all())
