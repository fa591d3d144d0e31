"""The toy 2DS world and its task ([B] Sec. 5.1, spec B7): answers, balance, layouts, splits,
metrics, the teacher-forced layout, and training end to end through the normal recipe."""

from __future__ import annotations

import itertools

import pytest
import torch

from circuits.config import RunConfig, Toy2DSConfig
from circuits.data.toy2ds import CATEGORIES, COLORS, SHAPES, Toy2DSWorld
from circuits.errors import ConfigError
from circuits.tasks import Task, Toy2DSTask, build_task
from conftest import cli_run, cli_user_error

CFG = Toy2DSConfig(n_train_per_k=300)  # the paper-sized test set (500 images), a small training set


@pytest.fixture(scope="module")
def world() -> Toy2DSWorld:
    return Toy2DSWorld(CFG)


def objects_of(pixels: torch.Tensor, width: int) -> list[dict]:
    """Read an image back from its pixels alone: {(colour name, shape name): (row, col)}."""
    out = {}
    for cell in pixels.nonzero().flatten().tolist():
        obj = int(pixels[cell]) - 1
        out[(COLORS[obj // CFG.n_shapes], SHAPES[obj % CFG.n_shapes])] = (cell // width, cell % width)
    return out


def reference_answer(words: list[str], objects: dict) -> list[str]:
    """The answer to a question (its words) about the objects of an image, in plain Python."""
    def find(color=None, shape=None):
        (hit,) = [o for o in objects if (color is None or o[0] == color) and (shape is None or o[1] == shape)]
        return hit

    if words[0].startswith("what"):
        pick = {"top": lambda o: objects[o][0], "bottom": lambda o: -objects[o][0],
                "left": lambda o: objects[o][1], "right": lambda o: -objects[o][1]}[words[1]]
        color, shape = min(objects, key=pick)
        return {"what color": [color], "what shape": [shape], "what object": [color, shape]}[words[0]]
    rel = next(w for w in words if w in ("left of", "right of", "above", "below"))
    i = words.index(rel)
    parse = lambda ws: find(*(ws if len(ws) == 2 else (ws[0], None) if ws[0] in COLORS else (None, ws[0])))  # noqa: E731
    (ra, ca), (rb, cb) = objects[parse(words[1:i])], objects[parse(words[i + 1 :])]
    truth = {"left of": ca < cb, "right of": ca > cb, "above": ra < rb, "below": ra > rb}[rel]
    return ["yes" if truth else "no"]


def test_toy2ds_task_is_a_task(world) -> None:
    assert isinstance(Toy2DSTask(world), Task)


def test_the_test_set_has_the_papers_size(world) -> None:
    test = world.test
    assert len(test.pixels) == 500 and len(test) == 3000
    assert torch.bincount(test.k).tolist()[2:] == [100] * 5
    assert torch.bincount(test.category).tolist() == [500] * 6


@pytest.mark.parametrize("split", ["test", "train"])
def test_every_answer_is_the_answer_recomputed_from_the_pixels(world, split) -> None:
    data, names = world[split], world.vocab.names()
    n = len(data) if split == "test" else 1200
    for q in range(n):
        words = [names[t] for t in data.question[q].tolist() if t != world.vocab.pad]
        answer = [names[t] for t in data.answer[q].tolist() if t != world.vocab.pad]
        objects = objects_of(data.pixels[data.image[q]], CFG.width)
        assert answer == reference_answer(words, objects) + ["[EOT]"], (q, words, objects)


def test_objects_take_distinct_rows_columns_colours_and_shapes(world) -> None:
    for data in (world.test, world.train):
        for pixels, k in zip(data.pixels, data.k.tolist()):
            objects = objects_of(pixels, CFG.width)
            assert len(objects) == k
            for attribute in range(2):  # colour, shape
                assert len({o[attribute] for o in objects}) == k
            for axis in range(2):  # row, column
                assert len({cell[axis] for cell in objects.values()}) == k


def test_relative_answers_are_half_yes_in_every_k_and_category(world) -> None:
    data, v = world.test, world.vocab
    for cat in (1, 3, 5):
        for k in range(2, 7):
            chosen = (data.category == cat) & (data.question_k == k)
            assert int((data.answer[chosen, 0] == v.yes).sum()) == 50
            assert int((data.answer[chosen, 0] == v.no).sum()) == 50


def test_every_test_image_of_a_k_shows_the_same_objects_in_a_new_layout(world) -> None:
    data = world.test
    for k in range(2, 7):
        images = data.pixels[data.k == k]
        sets = {frozenset(objects_of(p, CFG.width)) for p in images}
        layouts = {tuple((p != 0).tolist()) for p in images}
        assert len(sets) == 1 and len(layouts) == len(images) == 100


def test_test_objects_differ_between_seeds() -> None:
    other = Toy2DSWorld(Toy2DSConfig(n_train_per_k=10, test_seed=5))
    assert any(not torch.equal(other.test_objects[k], Toy2DSWorld(Toy2DSConfig(n_train_per_k=10)).test_objects[k]) for k in range(2, 7))


def test_no_training_layout_is_a_test_layout(world) -> None:
    test = {tuple((p != 0).tolist()) for p in world.test.pixels}
    train = {tuple((p != 0).tolist()) for p in world.train.pixels}
    assert len(train) > 100 and not test & train


def test_the_world_is_a_function_of_its_config(world) -> None:
    again = Toy2DSWorld(CFG)
    assert torch.equal(again.train.pixels, world.train.pixels) and torch.equal(again.test.question, world.test.question)


# --------------------------------------------------------------------------- the task
def test_a_sequence_is_bos_question_sep_answer_with_loss_on_the_answer_only(world) -> None:
    task, v = Toy2DSTask(world), world.vocab
    batch = task.batch("test")
    data = world.test
    sep = task.sep_offset
    assert batch.text.shape == (3000, 10) and torch.equal(batch.pixels, data.pixels[data.image])
    assert (batch.text[:, 0] == v.bos).all() and (batch.text[:, sep] == v.sep).all()
    assert torch.equal(batch.text[:, 1:sep], data.question)
    assert (batch.targets[:, :sep] == -100).all()
    answer_tokens = (data.answer != v.pad).sum(1)
    assert torch.equal((batch.targets != -100).sum(1), answer_tokens)
    two = data.category == CATEGORIES.index("shape_color_abs")
    assert torch.equal(batch.targets[two, sep:], data.answer[two])
    assert torch.equal(batch.text[two, sep + 1 :], data.answer[two, :2])


def test_exact_match_counts_tokens_up_to_eot_only(world) -> None:
    task, v = Toy2DSTask(world), world.vocab
    one = world.test.where(world.test.category == 1)
    rel = one.where(torch.arange(len(one)) < 1)
    yes_no = int(rel.answer[0, 0])
    wrong = v.no if yes_no == v.yes else v.yes
    generated = torch.tensor([[yes_no, v.eot, 17], [wrong, v.eot, v.pad], [yes_no, yes_no, v.eot]])
    triple = rel.where(torch.zeros(3, dtype=torch.long))
    assert task.exact_match(generated, triple).tolist() == [True, False, False]


def test_overall_is_the_unweighted_mean_of_the_categories(world) -> None:
    task = Toy2DSTask(world)
    data = world.test
    keep = (data.category != 0) | (torch.arange(len(data)) % 5 == 0)  # colour_abs: one question in 5 kept
    data = data.where(keep)
    correct = data.category == 0  # all colour_abs right, everything else wrong
    acc = task.accuracy(correct, data)
    assert acc["color_abs"] == 1.0 and acc["shape_rel"] == 0.0
    assert acc[""] == pytest.approx(1 / 6)
    assert acc[""] != pytest.approx(float(correct.float().mean()))
    assert acc["abs"] == pytest.approx(1 / 3) and acc["rel"] == 0.0


def test_accuracy_against_k_reads_the_questions_of_that_k(world) -> None:
    task = Toy2DSTask(world)
    data = world.test
    correct = (data.question_k == 3) | ((data.question_k == 5) & (data.category == 2))
    acc = task.accuracy(correct, data)
    assert [acc[f"k{k}"] for k in range(2, 7)] == pytest.approx([0, 1, 0, 1 / 6, 0])
    table = task.accuracy_table(correct, data)
    assert table.shape == (5, 6) and table[1].tolist() == [1.0] * 6 and table[3, 2] == 1.0 and table.sum() == 7


def test_the_probe_marks_the_two_objects_each_relative_question_names(world) -> None:
    task, names = Toy2DSTask(world), world.vocab.names()
    probe = task.probe("test")
    assert len(probe) == 1500 and probe.query == 36 + task.sep_offset
    for i in range(0, 1500, 97):
        tokens = probe.tokens[i]
        words = [names[t] for t in tokens[36 + 1 : 36 + task.sep_offset].tolist() if t]
        rel = next(j for j, w in enumerate(words) if w in ("left of", "right of", "above", "below"))
        for cell, said in ((probe.first[i], words[1:rel]), (probe.second[i], words[rel + 1 :])):
            obj = int(tokens[cell]) - 1
            assert set(said) <= {COLORS[obj // 6], SHAPES[obj % 6]}
            assert probe.columns[cell] == cell % 6 and probe.rows[cell] == cell // 6


# ------------------------------------------------------------------------- config, training
TINY = {"task": "toy2ds", "model.kind": "prefix_lm", "toy2ds.n_train_per_k": 40, "toy2ds.n_test_per_k": 8,
        "model.decoder.d_model": 16, "model.decoder.d_head": 4, "model.decoder.n_heads": 2,
        "train.steps": 30, "train.eval_every": 15, "train.lr": 3e-3, "train.device": "cpu"}


def test_toy2ds_needs_a_prefix_lm() -> None:
    with pytest.raises(ConfigError, match="task 'toy2ds' .* needs model.kind='prefix_lm' \\(got 'clip'\\)"):
        RunConfig().with_overrides({"task": "toy2ds"})


@pytest.mark.parametrize("key, task", [("world.width=4", "toy2ds"), ("toy2ds.n_test_per_k=50", "relations")])
def test_a_setting_of_the_other_tasks_data_is_refused_not_ignored(key, task) -> None:
    overrides = [key, *([f"{k}={v}" for k, v in TINY.items()] if task == "toy2ds" else [])]
    with pytest.raises(ConfigError, match=f"{key.split('=')[0]} does not apply to task='{task}'"):
        RunConfig().with_overrides(overrides)


def test_a_config_saved_before_the_task_field_reads_as_the_relation_world() -> None:
    data = RunConfig().to_dict()
    del data["task"], data["toy2ds"]
    cfg = RunConfig.from_dict(data)
    assert cfg.task == "relations" and type(build_task(cfg)).__name__ == "World"


def test_pooling_is_checked_against_the_toy2ds_grid() -> None:
    with pytest.raises(ConfigError, match="toy2ds.height=6"):
        RunConfig().with_overrides({**TINY, "model.decoder.pool_tokens": 16})
    assert RunConfig().with_overrides({**TINY, "model.decoder.pool_tokens": 9}).model.decoder.pool_tokens == 9


def test_too_many_test_layouts_are_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="n_test_per_k=300 needs at most half of the 450 layouts of 2 objects"):
        Toy2DSWorld(Toy2DSConfig(n_test_per_k=300))


@pytest.mark.parametrize("key, value", [("max_objects", 7), ("min_objects", 1), ("n_colors", 7)])
def test_impossible_toy2ds_settings_are_refused(key, value) -> None:
    with pytest.raises(ConfigError, match=f"toy2ds.{key}"):
        RunConfig().with_overrides({**TINY, f"toy2ds.{key}": value})


def test_lenscli_trains_a_tiny_model_on_toy2ds_and_it_loads_back(tmp_path) -> None:
    import json

    import circuits
    from circuits.evaluation import evaluate

    sets = [arg for key, value in TINY.items() for arg in ("--set", f"{key}={value}")]
    out = cli_run("train", *sets, "--out", tmp_path / "run", "--quiet")
    assert "test.color_rel" in out and "test.k6" in out
    run = circuits.load(tmp_path / "run")
    assert run.cfg == RunConfig().with_overrides(TINY) and isinstance(run.task, Toy2DSTask)
    losses = list(itertools.chain.from_iterable(row["step_losses"] for row in run.history))
    assert len(losses) == 30 and sum(losses[-5:]) < sum(losses[:5])
    assert {"test", "test.color_rel", "test.k6", "train_sample"} <= set(run.final)
    assert torch.equal(run.task["test"].question, Toy2DSWorld(run.cfg.toy2ds).test.question)
    metrics = evaluate(run.model, run.task)
    assert metrics == pytest.approx({k: v for k, v in run.final.items() if k.startswith("test")})
    assert json.loads(cli_run("eval", "--ckpt", tmp_path / "run", "--json")) == pytest.approx(metrics)


def test_lenscli_refuses_toy2ds_on_a_clip_model_in_one_line(tmp_path) -> None:
    line = cli_user_error("train", "--set", "task=toy2ds", "--out", tmp_path / "run")
    assert "needs model.kind='prefix_lm'" in line


class Shift(torch.nn.Module):
    """A stand-in model whose next token after token t is t + shift (mod the vocabulary)."""

    def __init__(self, shift: int, n_pixels: int, d_vocab: int):
        super().__init__()
        self.shift, self.n_pixels, self.d_vocab, self.device = shift, n_pixels, d_vocab, torch.device("cpu")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot((tokens[:, self.n_pixels :] + self.shift) % self.d_vocab, self.d_vocab).float()


def test_generation_feeds_back_each_token_and_stops_at_eot(world) -> None:
    task, v = Toy2DSTask(world), world.vocab
    data = world.test.where(torch.arange(len(world.test)) < 12)
    assert task.generate(Shift(2, 36, v.d_vocab), data).tolist() == [[v.sep + 2, v.sep + 4, v.sep + 6]] * 12
    assert v.sep + 1 == v.eot and task.generate(Shift(1, 36, v.d_vocab), data).tolist() == [[v.eot, v.pad, v.pad]] * 12


def test_a_null_batch_size_means_the_tasks_minibatch_and_toy2ds_runs_are_never_stacked() -> None:
    from circuits.config import TrainConfig, WorldConfig
    from circuits.data import World
    from circuits.train.ensemble import ensemble_key
    from circuits.train.loop import batch_size

    task = Toy2DSTask(Toy2DSConfig(n_train_per_k=10, n_test_per_k=4))
    assert batch_size(TrainConfig(), task) == 256 and batch_size(TrainConfig(batch_size=32), task) == 32
    world = World(WorldConfig(width=6, n_labels=6, n_pair_labels=4, n_single_positions=4, n_pair_positions=8))
    assert batch_size(TrainConfig(), world) is None
    assert ensemble_key(RunConfig().with_overrides(TINY)) is None and ensemble_key(RunConfig()) is not None
