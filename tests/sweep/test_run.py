"""Specification of `run_sweep` with the local executor: OUT layout, resuming, added values,
failures recorded while the others go on, a different spec refused, `load_results`."""

from __future__ import annotations

import json

import pytest

import circuits
from circuits.sweep import SweepError, SweepSpec, load_results, run_sweep, summarize

from sweep_helpers import tiny_spec


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "out"
    summary = run_sweep(tiny_spec(), out, jobs=1, progress=False)
    return out, summary


def test_every_run_is_a_loadable_checkpoint_named_by_its_id(finished):
    out, _ = finished
    for run in tiny_spec().expand():
        loaded = circuits.load(out / "runs" / run.run_id)
        assert loaded.cfg.world.n_pair_positions == run.values["world.n_pair_positions"]
        assert loaded.cfg.train.seed == run.values["seed"]


def test_the_results_table_has_a_row_per_run_with_swept_keys_and_final_metrics(finished):
    out, _ = finished
    frame = load_results(out)
    assert sorted(frame["run_id"]) == sorted(r.run_id for r in tiny_spec().expand())
    assert set(frame["status"]) == {"done"}
    for column in ("world.n_pair_positions", "seed", "single_object", "seen_pair", "unseen_pair", "train_seconds"):
        assert frame[column].notna().all(), column
    first = frame.iloc[0]
    history = circuits.load(out / "runs" / first["run_id"]).history
    assert first["unseen_pair"] == pytest.approx(history[-1]["unseen_pair"])
    assert (out / "results.csv").read_text().splitlines()[0].startswith("run_id,status")


def test_the_results_table_has_the_best_unseen_pair_of_each_history(finished):
    out, _ = finished
    frame = load_results(out)
    for _, row in frame.iterrows():
        history = circuits.load(out / "runs" / row["run_id"]).history
        assert row["best_unseen_pair"] == pytest.approx(max(h["unseen_pair"] for h in history))


def test_summarize_gives_mean_std_and_count_over_seeds(finished):
    out, _ = finished
    frame = load_results(out)
    table = summarize(frame, metrics=["unseen_pair"])
    for n2, group in frame.groupby("world.n_pair_positions"):
        assert table.loc[n2, ("unseen_pair", "mean")] == pytest.approx(group["unseen_pair"].mean())
        assert table.loc[n2, ("unseen_pair", "count")] == 2


def test_a_rerun_trains_nothing_and_changes_no_checkpoint(finished):
    out, _ = finished
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/model.safetensors")}
    summary = run_sweep(tiny_spec(), out, jobs=1, progress=False)
    assert (summary.skipped, summary.trained) == (4, 0)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_added_grid_values_train_only_the_new_runs(tmp_path):
    out = tmp_path / "out"
    run_sweep(tiny_spec(steps=10, **{"world.n_pair_positions": [2]}), out, jobs=1, progress=False)
    summary = run_sweep(tiny_spec(steps=10, **{"world.n_pair_positions": [2, 3]}), out, jobs=1, progress=False)
    assert (summary.skipped, summary.trained) == (2, 2)


def test_a_different_spec_into_the_same_out_is_refused_without_force(finished):
    out, _ = finished
    before = (out / "sweep.json").read_text()
    with pytest.raises(SweepError, match="different sweep"):
        run_sweep(tiny_spec(steps=21), out, jobs=1, progress=False)
    assert (out / "sweep.json").read_text() == before


def test_a_failing_run_is_recorded_with_its_reason_and_the_others_finish(tmp_path):
    out = tmp_path / "out"
    spec = tiny_spec(steps=10, **{"train.lr": [3e-3, 1e30]})
    summary = run_sweep(spec, out, jobs=1, progress=False)
    frame = load_results(out)
    bad = frame[frame["train.lr"] == 1e30]
    assert set(bad["status"]) == {"failed"} and all("nan" in e.lower() for e in bad["error"])
    assert set(frame[frame["train.lr"] == 3e-3]["status"]) == {"done"}
    assert set(summary.failed) == set(bad["run_id"])
    assert not any((out / "runs" / r).exists() for r in bad["run_id"])


def test_worker_processes_give_the_same_results_as_one_process(finished, tmp_path):
    out, _ = finished
    parallel = tmp_path / "parallel"
    run_sweep(tiny_spec(), parallel, jobs=2, progress=False)
    cols = ["run_id", "single_object", "seen_pair", "unseen_pair", "loss"]
    one = load_results(out)[cols].sort_values("run_id").reset_index(drop=True)
    two = load_results(parallel)[cols].sort_values("run_id").reset_index(drop=True)
    assert one.equals(two)


def test_an_ensemble_sweep_gives_the_results_of_single_runs(tmp_path):
    spec = SweepSpec.from_dict({**tiny_spec().to_dict(), "tie_world_seed": False, "grid": {}, "seeds": 3})
    alone, stacked = tmp_path / "alone", tmp_path / "stacked"
    run_sweep(spec, alone, jobs=1, progress=False)
    run_sweep(spec, stacked, jobs=1, ensemble=3, progress=False)
    cols = ["run_id", "single_object", "seen_pair", "unseen_pair"]
    a = load_results(alone)[cols].sort_values("run_id").reset_index(drop=True)
    b = load_results(stacked)[cols].sort_values("run_id").reset_index(drop=True)
    assert list(a["run_id"]) == list(b["run_id"])
    assert (a[cols[1:]] - b[cols[1:]]).abs().max().max() <= 1e-4


def test_analyze_adds_cached_ablation_and_bias_columns(finished):
    from circuits.ablate import evaluate_ablation
    from circuits.sweep import analyze_sweep, parse_ablation

    out, _ = finished
    analyze_sweep(out, ["EP", "EP+PP+BP"], bias=True, jobs=1, progress=False)
    frame = load_results(out)
    row = frame.iloc[0]
    run = circuits.load(out / "runs" / row["run_id"])
    want = evaluate_ablation(run.model, run.task, parse_ablation("EP+PP+BP"))["ablated"]["unseen_pair"]
    assert row["ablate.EP+PP+BP.unseen_pair"] == pytest.approx(want)
    assert frame["bias.max_lr"].notna().all()
    cache = out / "analysis" / f"{row['run_id']}.json"
    stamp = cache.stat().st_mtime_ns
    analyze_sweep(out, ["EP"], bias=True, jobs=1, progress=False)
    assert cache.stat().st_mtime_ns == stamp, "nothing new was asked: the cache is reused"
    assert "ablate.EP.unseen_pair" in json.loads(cache.read_text())["columns"]


def test_analyze_top1_adds_the_top_caption_classes_that_match_the_accuracy(finished):
    from circuits.sweep import analyze_sweep

    out, _ = finished
    analyze_sweep(out, top1=True, jobs=1, progress=False)
    frame = load_results(out)
    classes = ["top1.correct", "top1.reversed", "top1.one_object", "top1.pair_one_label", "top1.unrelated"]
    assert frame[classes].sum(axis=1).tolist() == pytest.approx([1.0] * len(frame))
    assert frame["top1.correct"].tolist() == pytest.approx(frame["unseen_pair"].tolist())  # one true caption per image
