"""The captioning task of the prefix-LM: sequences, exact match, label-set accuracy, probes."""

from __future__ import annotations

import torch

from circuits.config import WorldConfig
from circuits.data import World
from circuits.tasks import CaptionTask, Task

WORLD = World(WorldConfig(width=6, n_labels=6, n_pair_labels=4, n_single_positions=4, n_pair_positions=8))


def test_caption_task_is_a_task() -> None:
    assert isinstance(CaptionTask(WORLD), Task)


def test_a_sequence_is_bos_and_the_caption_shifted_by_one() -> None:
    task = CaptionTask(WORLD)
    batch = task.batch("train_pair")
    v = WORLD.vocab
    x, y = int(WORLD["train_pair"].objects[0, 0]), int(WORLD["train_pair"].objects[0, 1])
    assert batch.text[0].tolist() == [task.bos, x, v.left_of, y]
    assert batch.targets[0].tolist() == [x, v.left_of, y, v.eot]
    assert torch.equal(batch.pixels, WORLD["train_pair"].images[:, 1:])


def test_bidirectional_worlds_give_one_sequence_per_true_caption() -> None:
    world = World(WorldConfig(width=6, n_labels=6, n_pair_labels=4, n_single_positions=4, n_pair_positions=8, captions="bidirectional"))
    assert len(CaptionTask(world).batch("train_pair")) == 2 * len(world["train_pair"])


def test_exact_match_and_label_set_on_hand_built_generations() -> None:
    task, v = CaptionTask(WORLD), WORLD.vocab
    split = WORLD["unseen_pair"].subset(slice(0, 1))
    x, y = split.objects[0].tolist()
    right = torch.tensor([[x, v.left_of, y, v.eot]])
    swapped = torch.tensor([[y, v.left_of, x, v.eot]])
    wrong_label = torch.tensor([[x, v.left_of, x, v.eot]])
    no_eot = torch.tensor([[x, v.left_of, y, y]])
    assert task.exact_match(right, split).tolist() == [True]
    assert task.exact_match(swapped, split).tolist() == [False]
    assert task.exact_match(no_eot, split).tolist() == [False]
    assert task.label_set_match(swapped, split).tolist() == [True]
    assert task.label_set_match(wrong_label, split).tolist() == [False]


def test_probe_marks_the_vision_positions_and_the_bos_query() -> None:
    task = CaptionTask(WORLD)
    probe = task.probe("unseen_pair")
    split = WORLD["unseen_pair"]
    assert torch.equal(probe.first, split.positions[:, 0]) and probe.query == 6
    assert probe.columns.tolist() == [0, 1, 2, 3, 4, 5, -1, -1, -1, -1]


def test_probe_positions_are_pooled_bins_when_pooled() -> None:
    task = CaptionTask(WORLD, pool_tokens=2)
    assert task.vision_position(torch.tensor([0, 2, 3, 5])).tolist() == [0, 0, 1, 1]


class _ReadsPixels:
    """A stand-in decoder whose next-token logits spell "first left_of second [EOT]", with first /
    second the image's left and right objects (``left_first``) or the other way round; with
    ``relation_first`` it spells "left_of first second [EOT]"."""

    device = torch.device("cpu")

    def __init__(self, left_first: bool, relation_first: bool = False):
        self.left_first, self.relation_first = left_first, relation_first

    def caption(self, pixels: torch.Tensor) -> torch.Tensor:
        v, n_px = WORLD.vocab, WORLD.cfg.n_pixels
        cols = torch.arange(n_px).expand_as(pixels)
        left = pixels.gather(1, torch.where(pixels > 0, cols, n_px).argmin(1, keepdim=True))[:, 0]
        right = pixels.gather(1, torch.where(pixels > 0, cols, -1).argmax(1, keepdim=True))[:, 0]
        a, b = (left, right) if self.left_first else (right, left)
        words = [torch.full_like(a, v.left_of), a, b] if self.relation_first else [a, torch.full_like(a, v.left_of), b]
        return torch.stack([*words, torch.full_like(a, v.eot)], 1)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        caption = self.caption(tokens[:, : WORLD.cfg.n_pixels])
        return 10.0 * torch.nn.functional.one_hot(caption, WORLD.d_vocab_text + 1).float()

    def generate(self, pixels: torch.Tensor, bos: int) -> torch.Tensor:
        return self.caption(pixels)


def test_order_choice_prefers_the_order_the_model_finds_likelier() -> None:
    task = CaptionTask(WORLD)
    assert task.order_choice(_ReadsPixels(left_first=True), "unseen_pair").all()
    assert not task.order_choice(_ReadsPixels(left_first=False), "unseen_pair").any()


def test_relation_first_sequences_put_the_relation_word_first() -> None:
    task, v = CaptionTask(WORLD, caption_order="relation_first"), WORLD.vocab
    pair, single = task.batch("train_pair"), task.batch("train_single")
    x, y = WORLD["train_pair"].objects[0].tolist()
    z = int(WORLD["train_single"].objects[0, 0])
    assert pair.text[0].tolist() == [task.bos, v.left_of, x, y] and pair.targets[0].tolist() == [v.left_of, x, y, v.eot]
    assert single.targets[0].tolist() == [v.is_, z, *WORLD.captions[WORLD["train_single"].true_captions[0, 0], 2:].tolist()]


def test_relation_first_generations_are_graded_in_the_worlds_word_order() -> None:
    split = WORLD["unseen_pair"]
    model = _ReadsPixels(left_first=True, relation_first=True)
    assert CaptionTask(WORLD, caption_order="relation_first").exact_match(
        CaptionTask(WORLD, caption_order="relation_first").generate(model, split), split).all()
    assert not CaptionTask(WORLD).exact_match(CaptionTask(WORLD).generate(model, split), split).any()


def test_relation_first_order_choice_prefers_the_order_the_model_finds_likelier() -> None:
    task = CaptionTask(WORLD, caption_order="relation_first")
    assert task.order_choice(_ReadsPixels(left_first=True, relation_first=True), "unseen_pair").all()
    assert not task.order_choice(_ReadsPixels(left_first=False, relation_first=True), "unseen_pair").any()
