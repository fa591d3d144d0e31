"""Specification of the experiments catalogue: every spec in experiments/ is a valid entry, and
its quick profile runs end to end (sweep, analysis, results.json / .md, figure)."""

from __future__ import annotations

import json

import pytest

from circuits.sweep.catalogue import entries, reproduce

NAMES = [e.name for e in entries()]


def test_the_catalogue_has_the_papers_entries():
    assert {"fig3", "fig4a", "app-c", "table2-left"} <= set(NAMES)


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
