"""The three-object world of App. N (A10.1): counts, truth of every paired caption, label sets,
and the default world left bit-identical."""

from __future__ import annotations

import hashlib
import itertools

import pytest
import torch

from circuits.config import WorldConfig
from circuits.data import World
from circuits.errors import ConfigError

# sha256 of the five default splits and the caption table, computed at commit 450dc97 (before
# the three-object world existed) by hashing the tensors in the order of `_digest`.
DEFAULT_DIGESTS = {
    "left": "768de7ce886aa4cac500af17f23b659bb53009e6203519242d3585bb9b967352",
    "bidirectional": "232ae3f8839bc271d020a16c75ad7611b948dafd24a1926fcf21796b42b38384",
    "grid4x4": "dbab9406d5f200306661a3bfab99cb69393f48259a70492e5d2bd82734c11058",
}
BASE_SPLITS = ("train_single", "train_pair", "single_object", "seen_pair", "unseen_pair")


def _digest(world: World) -> str:
    h = hashlib.sha256()
    for name in BASE_SPLITS:
        s = world[name]
        for t in (s.images, s.objects, s.positions, s.true_captions):
            h.update(t.numpy().tobytes())
    h.update(world.captions.numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def world3() -> World:
    return World(WorldConfig(max_objects=3))


@pytest.mark.parametrize(
    "name,cfg",
    [("left", WorldConfig()), ("bidirectional", WorldConfig(captions="bidirectional")), ("grid4x4", WorldConfig(width=4, height=4))],
)
def test_default_worlds_are_bit_identical_to_before_three_objects(name, cfg):
    assert _digest(World(cfg)) == DEFAULT_DIGESTS[name]


def test_adding_triples_leaves_the_one_and_two_object_splits_unchanged(world3):
    assert _digest(world3) == DEFAULT_DIGESTS["left"]


def test_default_world_has_no_triple_splits():
    w = World(WorldConfig())
    assert "train_triple" not in w.split_names and "unseen_triple" not in w.eval_splits


def test_ordered_counts(world3):
    # 15*14*13 ordered training triplets x 2 position triples; 5*4*3 held-out triplets x C(10,3)
    assert len(world3["train_triple"]) == 2730 * 2
    assert len(world3["unseen_triple"]) == 60 * 120
    assert len(world3.train) == 100 + 2100 + 5460


def test_unordered_counts_and_each_label_set_appears_twice():
    w = World(WorldConfig(max_objects=3, triplets="unordered"))
    objs = w["train_triple"].objects
    assert len(objs) == 455 * 2
    sets = {tuple(sorted(o.tolist())) for o in objs}
    assert len(sets) == 455


def test_sampled_test_positions():
    w = World(WorldConfig(max_objects=3, n_triple_test_positions=7))
    assert len(w["unseen_triple"]) == 60 * 7


def test_two_distinct_position_triples_per_ordered_triplet(world3):
    s = world3["train_triple"]
    by_triplet: dict[tuple, set] = {}
    for o, p in zip(s.objects.tolist(), s.positions.tolist()):
        by_triplet.setdefault(tuple(o), set()).add(tuple(p))
    assert len(by_triplet) == 2730
    assert all(len(v) == 2 for v in by_triplet.values())


def test_training_triples_use_training_labels_and_test_triples_held_out_labels(world3):
    assert set(world3["train_triple"].objects.unique().tolist()) == set(range(1, 16))
    assert set(world3["unseen_triple"].objects.unique().tolist()) == set(range(16, 21))


@pytest.mark.parametrize("captions", ["left", "bidirectional"])
@pytest.mark.parametrize("split", ["train_triple", "unseen_triple"])
def test_every_caption_paired_with_a_triple_image_is_true_of_its_pixels(captions, split):
    w = World(WorldConfig(max_objects=3, captions=captions, n_triple_test_positions=3))
    s = w[split]
    v = w.vocab
    for image, true in zip(s.images.tolist(), s.true_captions.tolist()):
        pixels = image[1:]
        where = {label: i for i, label in enumerate(pixels) if label != 0}
        assert len(where) == 3  # three distinct labels at three pixels
        relations = set()
        for x, y in itertools.permutations(where, 2):
            if where[x] < where[y]:
                relations |= {(x, v.left_of, y)}
                if captions == "bidirectional":
                    relations |= {(y, v.right_of, x)}
        said = {tuple(w.captions[c, :3].tolist()) for c in true}
        assert said == relations


def test_the_text_drawn_for_a_training_image_varies_over_its_three_pairs(world3):
    s = world3["train_triple"]
    first = s.captions  # the drawn text
    a, b, c = s.objects.T
    is_ab = first == torch.tensor([world3.caption_id(int(x), int(y)) for x, y in zip(a, b)])
    is_bc = first == torch.tensor([world3.caption_id(int(x), int(y)) for x, y in zip(b, c)])
    share_ab, share_bc = is_ab.float().mean().item(), is_bc.float().mean().item()
    assert 0.28 < share_ab < 0.39 and 0.28 < share_bc < 0.39


def test_two_dimensional_triples_have_three_distinct_columns():
    w = World(WorldConfig(width=4, height=2, n_labels=8, n_pair_labels=5, max_objects=3, n_pair_positions=3))
    cols = w["unseen_triple"].positions % 4
    assert bool((cols[:, 0] < cols[:, 1]).all() and (cols[:, 1] < cols[:, 2]).all())
    assert len(w.position_triples) == 2**3 * 4


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (dict(width=2, n_pair_positions=1, n_single_positions=1), "world.width >= 3"),
        (dict(n_pair_labels=2), "n_pair_labels >= 3"),
        (dict(n_pair_labels=18), ">= 3 held-out labels"),
        (dict(n_triple_positions=121), "n_triple_positions must be between 1 and the number of position triples 120"),
        (dict(max_objects=4), "world.max_objects must be 2 or 3"),
    ],
)
def test_impossible_three_object_worlds_are_one_line_errors(overrides, needle):
    cfg = WorldConfig(**{"max_objects": 3, **overrides})
    with pytest.raises(ConfigError, match=needle) as e:
        cfg.validate()
    assert "\n" not in str(e.value)
