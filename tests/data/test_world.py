"""Specification of the synthetic world (Sec. 2.1, App. A, App. K): split sizes, disjointness,
caption truth, image format, determinism, the 2D grid and image parsing."""

from __future__ import annotations

import dataclasses
import itertools
from collections import defaultdict

import pytest
import torch

from circuits.config import WorldConfig, n_position_pairs
from circuits.data import EVAL_SPLITS, SPLIT_NAMES, World
from circuits.errors import ConfigError

TRAIN_SPLITS = ("train_single", "train_pair")


@pytest.fixture(scope="module")
def rand_world(rand_world_cfg: WorldConfig) -> World:
    return World(rand_world_cfg)


def expected_sizes(cfg: WorldConfig) -> dict[str, int]:
    """Split sizes from the definitions in the module docstring / App. A."""
    n, n_pair, n_held = cfg.n_labels, cfg.n_pair_labels, cfg.n_labels - cfg.n_pair_labels
    n_pos_pairs = cfg.height**2 * cfg.width * (cfg.width - 1) // 2
    ordered_train, ordered_held = n_pair * (n_pair - 1), n_held * (n_held - 1)
    per_relation = ordered_train + ordered_held
    return {
        "train_single": n * cfg.n_single_positions,
        "train_pair": ordered_train * cfg.n_pair_positions,
        "single_object": n * (cfg.width * cfg.height - cfg.n_single_positions),
        "seen_pair": ordered_train * (n_pos_pairs - cfg.n_pair_positions),
        "unseen_pair": ordered_held * n_pos_pairs,
        "captions": n + per_relation * (2 if cfg.captions == "bidirectional" else 1),
    }


def image_set(split) -> set[tuple[int, ...]]:
    return {tuple(row) for row in split.images.tolist()}


def decode_objects(world: World, image: torch.Tensor) -> list[tuple[int, int]]:
    """(label, column) of every object in a token image, read from the pixels alone."""
    pixels = image[1:]
    return [(int(pixels[p]), p % world.cfg.width) for p in torch.nonzero(pixels).flatten().tolist()]


def caption_is_true(world: World, caption: torch.Tensor, image: torch.Tensor) -> bool:
    """Semantics of a caption, evaluated on the pixels of an image."""
    v = world.vocab
    objs = decode_objects(world, image)
    subject, relation, obj, end = caption.tolist()
    assert end == v.eot
    if relation == v.is_:
        assert obj == v.in_the_image
        return [label for label, _ in objs] == [subject]
    columns = {label: col for label, col in objs}
    if len(objs) != 2 or subject not in columns or obj not in columns or subject == obj:
        return False
    if relation == v.left_of:
        return columns[subject] < columns[obj]
    assert relation == v.right_of
    return columns[subject] > columns[obj]


# ---------------------------------------------------------------------------------- sizes
def test_default_world_has_the_documented_sizes(default_world):
    assert default_world.summary() == {
        "train_single": 100,
        "train_pair": 2100,
        "single_object": 100,
        "seen_pair": 7350,
        "unseen_pair": 900,
        "captions": 250,
    }


def test_default_bidirectional_world_doubles_the_relation_captions(bidirectional_world):
    sizes = bidirectional_world.summary()
    assert sizes["captions"] == 20 + 2 * 230
    assert {k: sizes[k] for k in SPLIT_NAMES} == {k: expected_sizes(WorldConfig())[k] for k in SPLIT_NAMES}


def test_split_sizes_follow_the_config_formulae(rand_world, rand_world_cfg):
    assert rand_world.summary() == expected_sizes(rand_world_cfg)
    assert set(rand_world.splits) == set(SPLIT_NAMES)
    assert len(rand_world.position_pairs) == n_position_pairs(rand_world_cfg)


def test_sizes_and_context_lengths(rand_world, rand_world_cfg):
    n_pixels = rand_world_cfg.width * rand_world_cfg.height
    assert rand_world.n_ctx_vision == n_pixels + 1
    assert rand_world.n_ctx_text == 4
    assert rand_world.d_vocab_vision == rand_world_cfg.n_labels + 2
    for name in SPLIT_NAMES:
        assert rand_world[name].images.shape[1] == n_pixels + 1
    assert rand_world.captions.shape == (rand_world.n_captions, 4)
    assert int(rand_world.captions.max()) < rand_world.d_vocab_text


def test_unknown_split_name_raises_key_error(default_world):
    with pytest.raises(KeyError, match="train_pairs"):
        default_world["train_pairs"]


# ---------------------------------------------------------------------------- disjointness
@pytest.mark.parametrize("val", EVAL_SPLITS)
def test_validation_images_never_appear_in_training(rand_world, val):
    train = image_set(rand_world["train_single"]) | image_set(rand_world["train_pair"])
    assert not train & image_set(rand_world[val])


def test_default_world_validation_images_never_appear_in_training(default_world):
    train = image_set(default_world.train)
    for val in EVAL_SPLITS:
        assert not train & image_set(default_world[val]), val


def test_images_within_each_split_are_distinct(rand_world):
    for name in SPLIT_NAMES:
        assert len(image_set(rand_world[name])) == len(rand_world[name]), name


def test_single_object_validation_uses_exactly_the_pixels_each_label_never_occupies_in_training(
    rand_world, rand_world_cfg
):
    train, val = defaultdict(set), defaultdict(set)
    for split, seen in ((rand_world["train_single"], train), (rand_world["single_object"], val)):
        for (label,), (p,) in zip(split.objects.tolist(), split.positions.tolist()):
            seen[label].add(p)
    for label in range(1, rand_world_cfg.n_labels + 1):
        assert len(train[label]) == rand_world_cfg.n_single_positions
        assert not train[label] & val[label]
        assert train[label] | val[label] == set(range(rand_world_cfg.n_pixels))


def test_seen_pair_validation_uses_exactly_the_position_pairs_held_out_for_that_ordered_pair(
    rand_world, rand_world_cfg
):
    train, val = defaultdict(set), defaultdict(set)
    for split, seen in ((rand_world["train_pair"], train), (rand_world["seen_pair"], val)):
        for (x, y), (a, b) in zip(split.objects.tolist(), split.positions.tolist()):
            seen[(x, y)].add((a, b))
    all_pairs = set(rand_world.position_pairs)
    ordered = set(itertools.permutations(range(1, rand_world_cfg.n_pair_labels + 1), 2))
    assert set(train) == ordered
    for pair in ordered:
        assert len(train[pair]) == rand_world_cfg.n_pair_positions
        assert not train[pair] & val[pair]
        assert train[pair] | val[pair] == all_pairs


def test_training_pairs_use_only_training_labels_and_unseen_pairs_only_held_out_ones(rand_world, rand_world_cfg):
    n_pair = rand_world_cfg.n_pair_labels
    train_labels = set(range(1, n_pair + 1))
    held_out = set(range(n_pair + 1, rand_world_cfg.n_labels + 1))
    for name in ("train_pair", "seen_pair"):
        assert set(rand_world[name].objects.flatten().tolist()) <= train_labels, name
    unseen = rand_world["unseen_pair"]
    assert set(unseen.objects.flatten().tolist()) <= held_out
    # every ordered held-out pair at every position pair
    got = {(x, y, a, b) for (x, y), (a, b) in zip(unseen.objects.tolist(), unseen.positions.tolist())}
    want = {(x, y, a, b) for x, y in itertools.permutations(sorted(held_out), 2) for a, b in rand_world.position_pairs}
    assert got == want
    # single-object images cover every label, held-out ones included
    assert set(rand_world["train_single"].objects.flatten().tolist()) == train_labels | held_out
    assert rand_world.train_labels == sorted(train_labels) and rand_world.heldout_labels == sorted(held_out)


def test_texts_seen_in_training_are_single_captions_and_training_pair_captions(rand_world, rand_world_cfg):
    ids = rand_world.train_caption_ids.tolist()
    objects = rand_world.caption_objects[ids]
    assert set(objects[objects >= 0].tolist()) <= set(range(1, rand_world_cfg.n_labels + 1))
    pair_labels = objects[(objects >= 0).all(-1)]
    assert (pair_labels <= rand_world_cfg.n_pair_labels).all()
    n_rel = 2 if rand_world_cfg.captions == "bidirectional" else 1
    n_pair = rand_world_cfg.n_pair_labels
    assert len(ids) == rand_world_cfg.n_labels + n_rel * n_pair * (n_pair - 1)


# ----------------------------------------------------------------------- captions & images
def test_every_caption_is_true_of_its_image(rand_world):
    for name in SPLIT_NAMES:
        split = rand_world[name]
        for image, true in zip(split.images, split.true_captions):
            ids = true[true >= 0]
            assert len(ids) >= 1
            for c in ids.tolist():
                assert caption_is_true(rand_world, rand_world.captions[c], image), (
                    name,
                    rand_world.image_text(image),
                    rand_world.caption_text(c),
                )


def test_every_caption_is_true_of_its_image_in_the_default_world(default_world):
    for name in SPLIT_NAMES:
        split = default_world[name]
        for image, c in zip(split.images[::7], split.captions[::7].tolist()):
            assert caption_is_true(default_world, default_world.captions[c], image), name


def test_the_listed_true_captions_are_all_the_true_captions(rand_world):
    """No caption in the candidate table is true of an image without being listed for it."""
    for name in SPLIT_NAMES:
        split = rand_world[name]
        truth = split.truth(rand_world.n_captions)
        for i in range(0, len(split), max(1, len(split) // 25)):
            semantic = [caption_is_true(rand_world, cap, split.images[i]) for cap in rand_world.captions]
            assert truth[i].tolist() == semantic, (name, i)


def test_split_metadata_matches_the_pixels(rand_world, rand_world_cfg):
    for name in SPLIT_NAMES:
        split = rand_world[name]
        k = 1 if name in ("train_single", "single_object") else 2
        assert split.objects.shape == split.positions.shape == (len(split), k)
        assert (split.n_objects == k).all()
        for image, objs, pos in zip(split.images, split.objects.tolist(), split.positions.tolist()):
            from_pixels = sorted(decode_objects(rand_world, image), key=lambda t: t[1])
            assert [(label, p % rand_world_cfg.width) for label, p in zip(objs, pos)] == from_pixels
            # objects are listed left to right
            cols = [p % rand_world_cfg.width for p in pos]
            assert cols == sorted(cols) and len(set(cols)) == len(cols)
            assert all(int(image[1 + p]) == label for label, p in zip(objs, pos))
            assert int((image[1:] != 0).sum()) == k


def test_left_only_captions_give_each_image_exactly_one_caption(default_world):
    for name in SPLIT_NAMES:
        assert default_world[name].true_captions.shape[1] == 1
    pair = default_world["unseen_pair"]
    for (x, y), c in zip(pair.objects.tolist(), pair.captions.tolist()):
        assert default_world.captions[c].tolist() == [x, default_world.vocab.left_of, y, default_world.vocab.eot]


def test_bidirectional_pair_images_have_exactly_the_captions_x_left_y_and_y_right_x(bidirectional_world):
    w, v = bidirectional_world, bidirectional_world.vocab
    for name in ("train_pair", "seen_pair", "unseen_pair"):
        split = w[name]
        assert split.true_captions.shape[1] == 2
        for image, true in zip(split.images[::5], split.true_captions[::5]):
            (x, _), (y, _) = sorted(decode_objects(w, image), key=lambda t: t[1])
            texts = [w.captions[c].tolist() for c in true.tolist()]
            assert texts == [[x, v.left_of, y, v.eot], [y, v.right_of, x, v.eot]]
    for name in ("train_single", "single_object"):
        split = w[name]
        assert ((split.true_captions >= 0).sum(-1) == 1).all()


def test_caption_table_rows_are_distinct_and_well_formed(rand_world):
    rows = [tuple(r) for r in rand_world.captions.tolist()]
    assert len(set(rows)) == len(rows)
    assert (rand_world.captions[:, -1] == rand_world.vocab.eot).all()


def test_caption_id_and_caption_text_agree(rand_world, rand_world_cfg):
    v = rand_world.vocab
    for label in range(1, rand_world_cfg.n_labels + 1):
        assert rand_world.captions[rand_world.caption_id(label)].tolist() == [label, v.is_, v.in_the_image, v.eot]
    x, y = 1, 2
    assert rand_world.captions[rand_world.caption_id(x, y)].tolist() == [x, v.left_of, y, v.eot]
    assert rand_world.caption_text(rand_world.caption_id(x, y)) == f"{x} is on the left of {y}"
    if rand_world_cfg.captions == "bidirectional":
        assert rand_world.captions[rand_world.caption_id(x, y, relation="right")].tolist() == [y, v.right_of, x, v.eot]
    else:
        with pytest.raises(KeyError):
            rand_world.caption_id(x, y, relation="right")
    if rand_world_cfg.n_pair_labels < rand_world_cfg.n_labels:
        with pytest.raises(KeyError):  # no caption mixes a training and a held-out label
            rand_world.caption_id(1, rand_world_cfg.n_labels)


def test_images_start_with_cls_and_are_background_elsewhere(rand_world, rand_world_cfg):
    cls = rand_world.vocab.cls
    for name in SPLIT_NAMES:
        images = rand_world[name].images
        assert (images[:, 0] == cls).all()
        pixels = images[:, 1:]
        assert not (pixels == cls).any()
        assert ((pixels >= 0) & (pixels <= rand_world_cfg.n_labels)).all()
        for img, objs, pos in zip(images, rand_world[name].objects, rand_world[name].positions):
            mask = torch.ones(rand_world_cfg.n_pixels, dtype=torch.bool)
            mask[pos] = False
            assert (img[1:][mask] == 0).all()


# --------------------------------------------------------------------------- determinism
def test_same_config_gives_identical_tensors(rand_world_cfg):
    a, b = World(rand_world_cfg), World(rand_world_cfg)
    assert torch.equal(a.captions, b.captions)
    for name in SPLIT_NAMES:
        for attr in ("images", "objects", "positions", "true_captions"):
            assert torch.equal(getattr(a[name], attr), getattr(b[name], attr)), (name, attr)


def test_different_seed_gives_different_placements():
    a, b = World(WorldConfig(seed=0)), World(WorldConfig(seed=1))
    assert not torch.equal(a["train_single"].positions, b["train_single"].positions)
    assert not torch.equal(a["train_pair"].positions, b["train_pair"].positions)
    assert torch.equal(a.captions, b.captions)  # the caption table does not depend on the seed
    assert a.summary() == b.summary()


# -------------------------------------------------------------------------------- 2D grid
def test_2d_grid_never_places_two_objects_in_one_column():
    world = World(WorldConfig(width=4, height=3, n_labels=6, n_pair_labels=4, n_pair_positions=8))
    for name in ("train_pair", "seen_pair", "unseen_pair"):
        cols = world[name].positions % 4
        assert (cols[:, 0] < cols[:, 1]).all(), name


def test_2d_grid_left_of_compares_columns_not_pixel_indices():
    """In a row-major grid the left object can have the larger pixel index (lower row)."""
    world = World(WorldConfig(width=4, height=3, n_labels=6, n_pair_labels=4, n_pair_positions=8))
    pos = world["unseen_pair"].positions
    assert (pos[:, 0] > pos[:, 1]).any(), "some left objects must sit on a later row"
    assert ((pos[:, 0] // 4) != (pos[:, 1] // 4)).any()
    v = world.vocab
    for (x, y), (a, b), c in zip(world["unseen_pair"].objects.tolist(), pos.tolist(), world["unseen_pair"].captions.tolist()):
        assert a % 4 < b % 4
        assert world.captions[c].tolist() == [x, v.left_of, y, v.eot]


def test_2d_column_helper():
    world = World(WorldConfig(width=5, height=3, n_pair_positions=3))
    assert [world.column(p) for p in (0, 4, 5, 9, 14)] == [0, 4, 0, 4, 4]


# ----------------------------------------------------------------------------- parse_image
def test_parse_image_round_trips_image_text_in_1d(default_world):
    for name in SPLIT_NAMES:
        image = default_world[name].images[3]
        assert torch.equal(default_world.parse_image(default_world.image_text(image)), image[None])


def test_parse_image_accepts_plain_row_major_pixels_in_2d():
    world = World(WorldConfig(width=3, height=3, n_labels=5, n_pair_labels=3, n_pair_positions=4))
    image = world["train_pair"].images[5]
    text = " ".join(str(int(t)) for t in image[1:])
    assert torch.equal(world.parse_image(text), image[None])
    assert torch.equal(world.parse_image(text.replace(" ", ", ")), image[None])


def test_parse_image_round_trips_image_text_in_2d():
    """`image_text` shows a grid as rows separated by ' | '; parsing what is shown gives the image back."""
    world = World(WorldConfig(width=3, height=3, n_labels=5, n_pair_labels=3, n_pair_positions=4))
    image = world["train_pair"].images[5]
    shown = world.image_text(image)
    assert shown.count("|") == 2
    assert torch.equal(world.parse_image(shown), image[None])


@pytest.mark.parametrize(
    "text, mention",
    [
        ("0 0 3", "pixels"),  # too short
        ("0 " * 11, "pixels"),  # too long
        ("0 0 0 0 0 0 0 0 0 21", "21"),  # 21 is [CLS], not a label
        ("0 0 0 0 0 0 0 0 0 -1", "-1"),
        ("0 0 0 0 0 0 0 0 0 x", "image"),
        ("0 0 0 0 0 0 0 0 0 1.5", "image"),
        ("", "pixels"),
    ],
)
def test_parse_image_rejects_bad_input_with_a_one_line_config_error(default_world, text, mention):
    with pytest.raises(ConfigError) as excinfo:
        default_world.parse_image(text)
    message = str(excinfo.value)
    assert "\n" not in message and mention in message


def test_parsed_image_has_cls_and_the_given_pixels(default_world):
    image = default_world.parse_image("0 0 17 0 19 0 0 0 0 0")
    assert image.tolist() == [[default_world.vocab.cls, 0, 0, 17, 0, 19, 0, 0, 0, 0, 0]]
    assert image.dtype == torch.long


# ------------------------------------------------------------------------------- Split API
def test_split_truth_marks_exactly_the_listed_captions(bidirectional_world):
    split = bidirectional_world["seen_pair"].subset(slice(0, 50))
    truth = split.truth(bidirectional_world.n_captions)
    assert truth.shape == (50, bidirectional_world.n_captions)
    assert (truth.sum(-1) == 2).all()
    for row, true in zip(truth, split.true_captions):
        assert set(torch.nonzero(row).flatten().tolist()) == set(true.tolist())


def test_train_is_single_then_pair_images(rand_world):
    train = rand_world.train
    n_single = len(rand_world["train_single"])
    assert len(train) == n_single + len(rand_world["train_pair"])
    assert torch.equal(train.images[:n_single], rand_world["train_single"].images)
    assert torch.equal(train.images[n_single:], rand_world["train_pair"].images)
    # single-object rows are padded with -1 where pair rows have a second object
    assert (train.objects[:n_single, 1] == -1).all() and (train.n_objects[:n_single] == 1).all()


def test_heldout_combinations_pair_every_held_out_label_with_training_labels_and_keep_unseen_pairs():
    cfg = WorldConfig(width=6, n_labels=7, n_pair_labels=4, n_single_positions=3, n_pair_positions=3)
    paper, control = World(cfg), World(dataclasses.replace(cfg, unseen_pairs="heldout_combinations"))
    held = set(control.heldout_labels)
    pairs = {tuple(p) for p in control["train_pair"].objects.tolist()}
    assert {(x, y) for x in control.train_labels for y in held} <= pairs  # held-out on the right ...
    assert {(y, x) for x in control.train_labels for y in held} <= pairs  # ... and on the left
    assert not any(x in held and y in held for x, y in pairs)
    assert torch.equal(control["unseen_pair"].images, paper["unseen_pair"].images)
    for name in ("train_pair", "seen_pair"):
        split = control[name]
        for image, true in zip(split.images, split.true_captions):
            assert caption_is_true(control, control.captions[int(true[0])], image)
