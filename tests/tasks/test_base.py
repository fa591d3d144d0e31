"""The task interface: the world is a `Task`, models are sized by it, and its probes mark the objects."""

from __future__ import annotations

import pytest
import torch

from circuits.errors import CircuitsError
from circuits.tasks import Probe, Task, build_task


def test_the_world_is_a_task_built_from_the_run_config(tiny_cfg):
    world = build_task(tiny_cfg)
    assert isinstance(world, Task)
    assert world.cfg == tiny_cfg.world
    assert set(world.eval_splits) <= set(world.split_names)
    assert world.model_sizes() == {"d_vocab_vision": world.d_vocab_vision, "n_ctx_vision": world.n_ctx_vision,
                                   "d_vocab_text": world.d_vocab_text, "n_ctx_text": world.n_ctx_text}


def test_a_vision_probe_marks_the_left_and_right_pixels_of_each_image(tiny_cfg):
    world = build_task(tiny_cfg)
    probe = world.probe("seen_pair", "vision")
    split = world["seen_pair"]
    rows = torch.arange(len(probe))
    assert torch.equal(probe.tokens[rows, probe.first], split.objects[:, 0])  # left object's label at `first`
    assert torch.equal(probe.tokens[rows, probe.second], split.objects[:, 1])
    assert (probe.columns[probe.first] < probe.columns[probe.second]).all()
    assert probe.names == ("left", "right") and probe.split == "seen_pair"


def test_a_text_probe_marks_subject_and_object_words(tiny_cfg):
    world = build_task(tiny_cfg)
    probe = world.probe("unseen_pair", "text")
    objects = world.caption_objects
    ids = [next(i for i in range(world.n_captions) if torch.equal(world.captions[i], t)) for t in probe.tokens]
    assert torch.equal(probe.tokens[:, 0], objects[ids, 0]) and torch.equal(probe.tokens[:, 2], objects[ids, 1])
    assert probe.names == ("subject", "object")


def test_subset_keeps_inputs_and_positions_together(tiny_cfg):
    probe = build_task(tiny_cfg).probe()
    part = probe.subset(slice(2, 5))
    assert isinstance(part, Probe) and len(part) == 3
    assert torch.equal(part.first, probe.first[2:5]) and torch.equal(part.tokens, probe.tokens[2:5])


@pytest.mark.parametrize(("split", "message"), [("train_single", "does not hold two-object images"),
                                                 ("nope", "unknown split 'nope'; splits are train_single")])
def test_probes_of_splits_without_two_objects_say_which_splits_have_them(tiny_cfg, split, message):
    with pytest.raises(CircuitsError, match=message):
        build_task(tiny_cfg).probe(split)
