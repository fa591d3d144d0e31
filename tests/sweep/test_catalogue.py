"""Specification of the experiments catalogue: every spec in experiments/ is a valid entry, and
its quick profile runs end to end (sweep, analysis, results.json / .md, figure)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from circuits.sweep import SweepError
from circuits.sweep.catalogue import Entry, ScriptEntry, entries, get, reproduce, script_metadata

NAMES = [e.name for e in entries() if isinstance(e, Entry)]
SCRIPTS = [e.name for e in entries() if isinstance(e, ScriptEntry)]
WITH_FIGURES = {"fig7", "fig6", "app-d", "app-j"}  # script entries that draw the paper's figure


def test_the_catalogue_has_the_papers_entries():
    assert {"fig3", "fig4a", "app-c", "table2-left"} <= set(NAMES)
    assert {"app-k", "app-l", "app-q", "fig25", "table3", "table4"} <= set(SCRIPTS)
    assert {"fig7", "fig6", "app-d", "app-e-f", "app-g", "app-j", "app-r"} <= set(SCRIPTS)  # the mechanism analyses
    assert {"app-o", "norm-sweep", "permutation", "pooling"} <= set(SCRIPTS)  # the toy VLM (issue 13)
    assert "rope-probe" in SCRIPTS  # [B] v2's RoPE probe and CMB (B11, an extension)


def test_an_entry_answers_to_the_names_the_issue_gives_it():
    assert get("fig24").name == "fig25" and get("table2-bidirectional").name == "table3"


def test_a_script_entry_is_read_without_importing_it(tmp_path):
    (tmp_path / "boom.py").write_text('raise SystemExit("imported")\nEXPERIMENT = {"name": "boom", "paper": "App. Z"}\n')
    assert script_metadata(tmp_path / "boom.py") == {"name": "boom", "paper": "App. Z"}
    assert [(e.name, e.paper) for e in entries(tmp_path)] == [("boom", "App. Z")]


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_script_entrys_quick_profile_writes_results_and_refuses_to_overwrite_them(name, tmp_path):
    result = reproduce(name, quick=True, out=tmp_path / name, progress=False)
    assert result["meta"]["profile"] == "quick" and result["rows"]
    assert "paper" in (tmp_path / name / "results.md").read_text().lower()
    if name in WITH_FIGURES:
        assert (tmp_path / name / "figure.html").read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(Exception, match="already holds results; pass --force"):
        reproduce(name, quick=True, out=tmp_path / name, progress=False)


def test_sweep_options_do_not_apply_to_a_script_entry(tmp_path):
    with pytest.raises(SweepError, match="is a script, not a sweep"):
        reproduce(SCRIPTS[0], quick=True, out=tmp_path, jobs=2, progress=False)


def test_a_sweep_entry_takes_first_seed_and_device_without_changing_its_run_ids(tmp_path):
    entry = get("fig4a")
    result = reproduce("fig4a", quick=True, out=tmp_path / "f", jobs=1, progress=False, seeds=1, first_seed=3, device="cpu")
    expected = {r.run_id for r in dataclasses.replace(entry.profile(True), seeds=[3]).expand()}
    assert {r["run_id"] for r in result["runs"]} == expected and {r["seed"] for r in result["runs"]} == {3}


def test_seeds_run_apart_merge_into_one_result(tmp_path):
    import importlib.util
    import sys

    one = reproduce("table4", quick=True, out=tmp_path / "s1", first_seed=1, device="cpu", progress=False)
    assert {r["seed"] for r in one["rows"]} == {1} and one["meta"]["device"] == "cpu"
    for seed in (1, 2):  # two full-profile results, one seed each (the rows of seed 1 relabelled as seed 2)
        (tmp_path / f"full{seed}").mkdir()
        rows = [dict(r, seed=seed, unseen_pair=seed / 4) for r in one["rows"]]
        meta = dict(one["meta"], profile="full", seconds=10.0 * seed)
        (tmp_path / f"full{seed}" / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}))
    path = get("table4").path
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("experiments_table4_merge", path)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--merge", str(tmp_path / "full1"), str(tmp_path / "full2"), "--out", str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert len(merged["rows"]) == 2 * len(one["rows"]) and merged["meta"]["seconds"] == 30.0
    assert "| ours N.1: 2-object model | 38 ± 18% |" in (tmp_path / "merged" / "results.md").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_the_full_profile_expands_to_valid_runs(name):
    entry = next(e for e in entries() if e.name == name)
    assert len(entry.spec.expand()) > len(entry.profile(quick=True).expand())


@pytest.mark.parametrize("name", NAMES)
def test_the_quick_profile_writes_results_markdown_and_figure(name, tmp_path):
    result = reproduce(name, quick=True, out=tmp_path / name, jobs=1, progress=False)
    on_disk = json.loads((tmp_path / name / "results.json").read_text())
    assert on_disk["groups"] == result["groups"] and result["groups"]
    assert all(run["status"] == "done" for run in on_disk["runs"])
    table = (tmp_path / name / "results.md").read_text()
    for column in next(e for e in entries() if e.name == name).spec.experiment["table"]:
        assert column in table
    assert (tmp_path / name / "figure.html").read_text().startswith("<!DOCTYPE html>")
