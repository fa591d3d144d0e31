"""Specification of the generic parts: `fit` on a user's own model and loss, the batch
samplers, and the package layout (``circuits.train`` is the package, the recipe is
``circuits.train_model``)."""

from __future__ import annotations

import json

import pytest
import torch

import circuits
from circuits.train import ClipBatch, fit, full_batch, minibatches, optimizer_step, take_rows


def mse(model, batch):
    inputs, target = batch
    return torch.nn.functional.mse_loss(model(inputs), target)


class Mse:
    def loss(self, model, batch):
        return mse(model, batch)


@pytest.fixture
def regression():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=gen)
    torch.manual_seed(0)
    return torch.nn.Linear(3, 1), (x, x @ torch.tensor([[1.0], [-2.0], [0.5]]))


# ----------------------------------------------------------------------------------- fit
def test_fit_trains_a_plain_module_on_a_plain_loss_function(regression):
    model, data = regression
    before = mse(model, data).item()
    history = fit(model, mse, full_batch(data), torch.optim.SGD(model.parameters(), lr=0.1), 50, eval_every=25, progress=False)
    assert [r["step"] for r in history] == [25, 50]
    assert mse(model, data).item() < before / 10


def test_an_objective_object_and_its_loss_function_train_identically(regression):
    model, data = regression
    twin = torch.nn.Linear(3, 1)
    twin.load_state_dict(model.state_dict())
    fit(model, mse, full_batch(data), torch.optim.SGD(model.parameters(), lr=0.1), 5, progress=False)
    fit(twin, Mse(), full_batch(data), torch.optim.SGD(twin.parameters(), lr=0.1), 5, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))


def test_rows_hold_the_step_loss_evaluation_and_seconds_and_are_logged(regression, tmp_path):
    model, data = regression
    logged, path = [], tmp_path / "m.jsonl"
    history = fit(model, mse, full_batch(data), torch.optim.SGD(model.parameters(), lr=0.1), 3, eval_every=2,
                  evaluate=lambda m: {"bias": m.bias.item()}, log=logged.append, metrics_path=path, progress=False)
    assert [list(r) for r in history] == [["step", "loss", "bias", "seconds"]] * 2
    assert history[-1]["bias"] == model.bias.item()
    assert logged == history == [json.loads(line) for line in path.read_text().splitlines()]


def test_the_row_loss_is_the_training_loss_of_that_step(regression):
    model, data = regression
    seen = []

    def recording_step(model, loss_fn, batch, optimizer):
        seen.append(optimizer_step(model, loss_fn, batch, optimizer).item())
        return torch.tensor(seen[-1])

    history = fit(model, mse, full_batch(data), torch.optim.SGD(model.parameters(), lr=0.1), 4, eval_every=2,
                  step=recording_step, progress=False)
    assert len(seen) == 4 and seen[0] != seen[1]
    assert [r["loss"] for r in history] == [seen[1], seen[3]]


# ------------------------------------------------------------------------------ batches
def test_minibatches_are_distinct_rows_drawn_by_the_seed():
    data = (torch.arange(20), torch.arange(40).view(20, 2))
    a, b, c = (minibatches(data, 6, seed=s) for s in (0, 0, 1))
    first = [next(a) for _ in range(3)]
    assert all(torch.equal(x[0], y[0]) for x, y in zip(first, [next(b) for _ in range(3)]))
    assert not torch.equal(first[0][0], next(c)[0])
    assert not torch.equal(first[0][0], first[1][0]), "a new draw every step"
    for idx, tens in first:
        assert len(set(idx.tolist())) == 6 and torch.equal(tens, data[1][idx])


def test_full_batch_yields_the_same_batch_every_step():
    data = {"x": torch.arange(5)}
    it = full_batch(data)
    assert next(it) is data and next(it) is data


def test_a_clip_batch_minibatch_selects_images_and_keeps_every_text():
    batch = ClipBatch(torch.arange(8)[:, None], torch.arange(3)[:, None], torch.eye(8, 3, dtype=torch.bool))
    part = take_rows(batch, torch.tensor([5, 0]))
    assert part.images.flatten().tolist() == [5, 0]
    assert torch.equal(part.captions, batch.captions)
    assert torch.equal(part.truth, batch.truth[[5, 0]])


# ------------------------------------------------------------------------------ layout
def test_circuits_train_is_the_package_and_train_model_the_recipe():
    import circuits.train.loss as loss_module

    assert circuits.train.loss is loss_module
    assert circuits.train_model is circuits.train.train


def test_step_losses_hold_every_steps_loss_since_the_previous_row(regression):
    model, data = regression
    twin = torch.nn.Linear(3, 1)
    twin.load_state_dict(model.state_dict())
    history = fit(model, mse, full_batch(data), torch.optim.SGD(model.parameters(), lr=0.1), 5, eval_every=2,
                  progress=False, step_losses=True)
    plain = fit(twin, mse, full_batch(data), torch.optim.SGD(twin.parameters(), lr=0.1), 5, eval_every=1, progress=False)
    assert [len(r["step_losses"]) for r in history] == [2, 2, 1]
    assert [x for r in history for x in r["step_losses"]] == pytest.approx([r["loss"] for r in plain])
    assert all(r["step_losses"][-1] == r["loss"] for r in history)
