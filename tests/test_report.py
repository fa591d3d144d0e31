"""The HTML report: self-contained (plotly.js once, nothing fetched), every section present,
the summary numbers are the library's, and writing it never clobbers a file by accident."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path

import plotly.offline
import pytest
import torch

import circuits
from circuits import report
from conftest import clip_for
from circuits.ablate import PAPER_ABLATIONS, Ablation, evaluate_ablation
from circuits.errors import CircuitsError
from circuits.evaluate import evaluate
from circuits.checkpoint import Run
from circuits.models import HookedCLIP
from circuits.stats import head_bias
from conftest import assert_tree_close, tiny_run_config

PLOTLY_JS = plotly.offline.get_plotlyjs()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def trained(one_thread) -> Run:
    """A tiny model trained for 30 steps (about a second), with its metrics history."""
    return circuits.train_model(tiny_run_config(), progress=False)


@pytest.fixture(scope="module")
def numbers(trained) -> dict:
    return report.headline(trained)


@pytest.fixture(scope="module")
def page(trained, numbers) -> str:
    return report.build_report(trained, headline=numbers)


# ----------------------------------------------------------------------------- self-contained
def test_plotly_js_is_embedded_exactly_once_and_nothing_is_fetched(page: str) -> None:
    assert page.count(PLOTLY_JS) == 1
    assert page.count("Plotly.newPlot") >= 10  # the figures, drawn with the inlined library
    assert re.findall(r"<script\b[^>]*\bsrc\s*=", page, flags=re.I) == []  # no external scripts at all
    assert re.findall(r"<link\b", page, flags=re.I) == []
    assert 'src="http' not in page and "src='http" not in page
    assert "cdn." not in page.replace(PLOTLY_JS, "") and "mathjax" not in page.replace(PLOTLY_JS, "").lower()
    # the only 'href="http' strings are attribution links inside plotly.js's own map code, never loaded
    assert 'href="http' not in page.replace(PLOTLY_JS, "")
    assert re.findall(r"""<a\b[^>]*href\s*=\s*["'](?!#)""", page.replace(PLOTLY_JS, "")) == []  # only in-page links


def test_the_report_is_a_complete_html_document_under_10_mb(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert len(page.encode("utf-8")) < report.MAX_BYTES == 10 * 1024 * 1024


def test_every_section_is_present_in_order(page: str) -> None:
    positions = [page.find(f">{title}</h2>") for title in report.SECTIONS.values()]
    assert all(p > 0 for p in positions), [t for t, p in zip(report.SECTIONS.values(), positions) if p < 0]
    assert positions == sorted(positions)


def test_without_history_there_is_no_training_section(trained, numbers) -> None:
    page = report.build_report(dataclasses.replace(trained, history=[]), headline=numbers, title="My <model>")
    assert report.SECTIONS["training"] not in page
    assert "<h1>My &lt;model&gt;</h1>" in page  # titles are escaped
    assert page.count(PLOTLY_JS) == 1


def test_the_training_section_plots_the_history(trained, page: str) -> None:
    compact = page.replace(" ", "")
    for key in ("step", "unseen_pair", "seen_pair", "single_object", "loss"):
        series = json.dumps([row[key] for row in trained.history]).replace(" ", "")
        assert series in compact, key


# ----------------------------------------------------------------------------- numbers
def test_headline_numbers_are_the_librarys(trained, numbers: dict) -> None:
    model, world = trained.model, trained.task
    assert numbers["accuracies"] == evaluate(model, world)
    assert numbers["world"] == world.summary()
    assert numbers["head_bias_rows"] == head_bias(model, world.probe()).rows()
    assert numbers["head_bias"]["first"] == head_bias(model, world.probe()).first
    json.dumps(numbers)  # printable / storable by the CLI as it is


def test_headline_ablation_table_matches_evaluate_ablation(trained, numbers: dict) -> None:
    model = trained.model
    assert list(numbers["ablation"]) == ["baseline", "EP", "PP", "BP", "EP+PP", "EP+PP+BP"]
    assert numbers["ablation_specs"]["EP+PP+BP"]["terms"] == ["EP", "PP", "BP"]
    assert numbers["ablation_skipped"] == []
    for name in ("EP", "EP+PP+BP"):
        out = evaluate_ablation(model, trained.task, Ablation(terms=tuple(name.split("+"))))
        assert numbers["ablation"][name] == {k: out["ablated"][k] for k in ("unseen_pair", "label_set")}
        assert numbers["ablation"]["baseline"] == {k: out["baseline"][k] for k in ("unseen_pair", "label_set")}


def test_the_summary_shows_the_headline_it_is_given(trained, numbers: dict, monkeypatch) -> None:
    doctored = copy.deepcopy(numbers)
    doctored["accuracies"]["unseen_pair"] = 0.4242
    doctored["ablation"]["EP"]["unseen_pair"] = 0.1717
    monkeypatch.setattr(report, "_headline", lambda *a, **k: pytest.fail("headline recomputed"))
    page = report.build_report(trained, headline=doctored)
    assert "<td>unseen_pair</td><td>0.424</td>" in page
    assert "<td>EP</td><td>0.172</td>" in page
    tables = report.headline_tables(doctored)
    assert [row["ablated"] for row in tables["ablation"]] == ["baseline", "EP", "PP", "BP", "EP+PP", "EP+PP+BP"]
    assert [row["head"] for row in tables["head_bias"]] == ["H0", "H1"]
    assert tables["head_bias"][0]["relational"] == pytest.approx(
        numbers["head_bias"]["relational_first"][0] + numbers["head_bias"]["relational_second"][0])


def test_ablations_the_model_lacks_terms_for_are_skipped_not_failed() -> None:
    cfg = tiny_run_config().with_overrides({"model.vision.qkv_bias": False})
    runnable, skipped = report.applicable_ablations(clip_for(cfg)[0])
    assert list(runnable) == ["EP", "PP", "EP+PP"] and skipped == ["BP", "EP+PP+BP"]


def test_the_gradient_section_plots_the_paper_terms_the_model_has(make_tiny_cfg) -> None:
    assert report.report_gradient_terms(clip_for(make_tiny_cfg())[0]) == ("EP", "PP", "BP", "EE", "PE")
    no_bias = clip_for(make_tiny_cfg().with_overrides({"model.vision.qkv_bias": False}))[0]
    assert report.report_gradient_terms(no_bias) == ("EP", "PP", "EE", "PE")


def test_example_images_are_two_object_images_of_their_splits(trained) -> None:
    world = trained.task
    examples = report.example_images(world)
    assert set(examples) == {"unseen_pair", "seen_pair"}
    for split, image in examples.items():
        assert any(torch.equal(image, other) for other in world[split].images)
        labels = [int(v) for v in image[1:] if v != 0]
        assert len(labels) == 2 and labels[0] < labels[1]
    held_out = set(world.heldout_labels)
    assert {int(v) for v in examples["unseen_pair"][1:] if v != 0} <= held_out


# ----------------------------------------------------------------------------- writing
def test_write_report_writes_atomically_and_refuses_to_clobber(trained, numbers: dict, tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.html"
    written = report.write_report(trained, target, headline=numbers)
    assert written == target and target.read_text().startswith("<!DOCTYPE html>")
    assert report.SECTIONS["training"] in target.read_text()
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]  # no temporary file left behind

    target.write_text("precious")
    with pytest.raises(CircuitsError, match="exists; pass force=True") as err:
        report.write_report(trained, target, headline=numbers)
    assert isinstance(err.value, report.ReportError) and "\n" not in str(err.value)
    assert target.read_text() == "precious"

    report.write_report(trained, target, headline=numbers, force=True)
    assert target.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]


def test_write_report_into_a_directory_path_is_an_error(trained, numbers: dict, tmp_path: Path) -> None:
    with pytest.raises(CircuitsError, match="is a directory"):
        report.write_report(trained, tmp_path, headline=numbers, force=True)


def test_a_model_without_learned_positions_still_gets_a_report() -> None:
    """Rotary vision encoder: no term has key source P, so the ablations of P terms and the
    relational split do not apply; they are reported as such instead of failing."""
    cfg = tiny_run_config().with_overrides({"model.vision.positional": "rotary"})
    run = Run(cfg, *clip_for(cfg))
    numbers = report.headline(run)
    assert list(numbers["ablation"]) == ["baseline"] and numbers["ablation_skipped"] == list(PAPER_ABLATIONS)
    bias = head_bias(run.model, run.task.probe())
    assert numbers["head_bias"]["first"] == bias.first and numbers["head_bias"]["label_specific"] == [None, None]
    page = report.build_report(run, headline=numbers)
    assert "Not defined for this model" in page and "Not applicable to this model: EP, PP, BP" in page
    assert all(f">{title}</h2>" in page for key, title in report.SECTIONS.items() if key != "training")


CHROMIUM = next((p for p in ("chromium", "chromium-browser", "google-chrome") if __import__("shutil").which(p)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium on this machine")
def test_a_headless_browser_draws_every_figure_offline(page: str, tmp_path: Path) -> None:
    """Opened with the network blocked (a dead proxy), every figure div holds a drawn plot."""
    import subprocess

    file = tmp_path / "report.html"
    file.write_text(page)
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--proxy-server=127.0.0.1:9",
         "--virtual-time-budget=20000", "--dump-dom", file.as_uri()],
        capture_output=True, text=True, timeout=180, check=True,
    ).stdout
    n_figures = page.count("Plotly.newPlot")
    assert n_figures >= 10
    assert dom.count('class="plot-container plotly"') == n_figures
