"""The HTML report: self-contained (plotly.js once, nothing fetched), every section present,
the summary numbers are the library's, and writing it never clobbers a file by accident."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import plotly.offline
import pytest
import torch

import circuits
from circuits import report
from conftest import clip_for
from circuits.ablate import PAPER_ABLATIONS, Ablation, evaluate_ablation
from circuits.errors import CircuitsError
from circuits.evaluation import evaluate
from circuits.checkpoint import Run
from circuits.stats import head_bias
from conftest import tiny_run_config

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


def test_every_section_that_applies_is_present_in_order(trained, page: str) -> None:
    titles = [report.SECTIONS[k] for k in report.applicable_sections(trained)]
    positions = [page.find(f">{title}</h2>") for title in titles]
    assert all(p > 0 for p in positions), [t for t, p in zip(titles, positions) if p < 0]
    assert positions == sorted(positions)


def test_the_rope_section_is_only_for_rotary_vision_encoders(trained, page: str) -> None:
    assert report.applicable_sections(trained) == [k for k in report.SECTIONS if k != "rope"]
    assert f">{report.SECTIONS['rope']}</h2>" not in page


def test_the_alignment_section_tables_the_librarys_held_out_numbers(trained, page: str) -> None:
    from circuits.align import initial_model, rotation_alignment

    world = trained.task
    a = rotation_alignment(trained.model, world.train_labels, world.heldout_labels,
                           n_permutations=report.REPORT_PERMUTATIONS, init_model=initial_model(trained.cfg, world))
    assert (f"<td>rotated</td><td>{a.rotated['diagonal']:.3f}</td><td>{a.rotated['off_diagonal']:.3f}</td>"
            f"<td>{a.rotated['gap']:.3f}</td><td>{a.rotated['top1']:.3f}</td><td>{a.permutation['p']:.3f}</td>") in page


def test_without_history_there_is_no_training_section(trained, numbers) -> None:
    page = report.build_report(dataclasses.replace(trained, history=[]), headline=numbers, title="My <model>")
    assert report.SECTIONS["training"] not in page and report.SECTIONS["phases"] not in page
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


def test_the_head_bias_table_speaks_the_probes_words_like_the_cli(trained, numbers: dict, page: str) -> None:
    bias = head_bias(trained.model, trained.task.probe())
    row = report.headline_tables(numbers)["head_bias"][1]
    assert list(row) == ["head", "left", "right", "max left", "max right", "max elsewhere", "rel→left", "rel→right",
                         "label", "relational"]
    assert list(row)[1:-1] == list(bias.labels().values())  # the headings of `lenscli bias`
    assert row["left"] == bias.first[1] and row["max elsewhere"] == bias.argmax_other[1]
    assert "<th>left</th><th>right</th>" in page
    assert "first = left" not in page and "first-mentioned" not in page and "<th>first</th>" not in page
    assert "more attention on the subject" in page  # the text encoder's probe names its objects too


def test_every_figure_of_the_report_has_its_own_title(trained, numbers: dict, monkeypatch) -> None:
    titles = []
    figure = report._Page.figure
    monkeypatch.setattr(report._Page, "figure", lambda self, fig: (titles.append(fig.layout.title.text), figure(self, fig)))
    report.build_report(trained, headline=numbers)
    assert len(titles) >= 10
    repeated = {t for t in titles if titles.count(t) > 1}
    assert repeated == set()


def test_no_table_or_figure_is_wider_than_the_page(page: str) -> None:
    assert re.search(r'"width":\s*\d{3,}', page.replace(PLOTLY_JS, "")) is None  # figures follow the page width
    assert page.count('<div class="scroll"><table>') == page.count("<table>")  # a wide table scrolls, is never cut
    # the encoder settings are rows, the two encoders columns: two data columns however many settings
    assert "<th>encoder setting</th><th>vision</th><th>text</th></tr>" in page
    assert "<td>n_heads</td><td>2</td><td>2</td>" in page


def test_the_gradient_section_tables_monotonicity_and_slope(trained, page: str) -> None:
    _, gradients = circuits.stats.spread_and_gradients(trained.model, trained.task.probe("unseen_pair"),
                                                       gradient_terms=report.report_gradient_terms(trained.model))
    g = gradients["EP"]
    assert f"<td>EP</td><td>ρ {g.monotonicity[0]:+.2f}, slope {g.slope[0]:+.3f}</td>" in page


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
    assert "--force" not in str(err.value)  # Python words in Python, CLI words for the CLI
    assert "pass --force" in err.value.cli_message and "force=True" not in err.value.cli_message
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
    assert "rope" in report.applicable_sections(run) and "training" not in report.applicable_sections(run)
    assert all(f">{report.SECTIONS[key]}</h2>" in page for key in report.applicable_sections(run))


# ----------------------------------------------------------------------------- in a browser
CHROMIUM = next((p for p in ("chromium", "chromium-browser", "google-chrome") if shutil.which(p)), None)


@pytest.fixture(scope="module")
def browser() -> str:
    """Headless Chromium. Without it the browser tests are skipped on a workstation, but fail
    in CI (``CI=true``), where .ci/run installs it from the distribution's packages."""
    if CHROMIUM is None:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("CI=true but no chromium / chromium-browser on PATH: .ci/run installs it (apt-get install chromium)")
        pytest.skip("no headless Chromium on this machine (CI installs it)")
    return CHROMIUM


def test_a_headless_browser_draws_every_figure_offline(browser: str, page: str, tmp_path: Path) -> None:
    """Opened with the network blocked (a dead proxy), every figure div holds a drawn plot."""
    file = tmp_path / "report.html"
    file.write_text(page)
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--proxy-server=127.0.0.1:9",
         "--virtual-time-budget=20000", "--dump-dom", file.as_uri()],
        capture_output=True, text=True, timeout=180, check=True,
    ).stdout
    n_figures = page.count("Plotly.newPlot")
    assert n_figures >= 10
    assert dom.count('class="plot-container plotly"') == n_figures


def read_png(path: Path) -> np.ndarray:
    """The pixels of an 8-bit RGB / RGBA PNG (what Chromium writes) as [height, width, channels]."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
        elif kind == b"IDAT":
            idat += body
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int64)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int64)
        if kind == 0:
            row = line
        elif kind == 2:
            row = (line + prev) % 256
        elif kind == 1:  # Sub: a running sum per channel
            row = np.cumsum(line.reshape(width, bpp), axis=0).reshape(-1) % 256
        else:  # Average, Paeth: pixel by pixel
            row, left = line.copy(), np.zeros(bpp, dtype=np.int64)
            up_left = np.zeros(bpp, dtype=np.int64)
            for x in range(0, stride, bpp):
                up = prev[x:x + bpp]
                if kind == 3:
                    pred = (left + up) // 2
                else:
                    p_ = left + up - up_left
                    pa, pb, pc = np.abs(p_ - left), np.abs(p_ - up), np.abs(p_ - up_left)
                    pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
                left = (line[x:x + bpp] + pred) % 256
                row[x:x + bpp] = left
                up_left = up
        out[y] = row
        prev = row
    return out.reshape(height, width, bpp)[:, :, :3]


def test_read_png_decodes_every_filter(tmp_path: Path) -> None:
    """The decoder the screenshot test relies on, against a PNG written by hand with all five filters."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(5, 4, 3)).astype(np.int64)
    rows, prev = b"", np.zeros(12, dtype=np.int64)
    for kind, row in enumerate(pixels.reshape(5, 12)):
        left = np.concatenate([np.zeros(3, dtype=np.int64), row[:-3]])
        up_left = np.concatenate([np.zeros(3, dtype=np.int64), prev[:-3]])
        p_ = left + prev - up_left
        pa, pb, pc = np.abs(p_ - left), np.abs(p_ - prev), np.abs(p_ - up_left)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, up_left))
        pred = [0, left, prev, (left + prev) // 2, paeth][kind]
        rows += bytes([kind]) + bytes(((row - pred) % 256).astype(np.uint8))
        prev = row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = tmp_path / "t.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 5, 8, 2, 0, 0, 0))
                    + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    assert np.array_equal(read_png(png), pixels)


def test_the_report_renders_to_a_screenshot_with_figures_on_it(browser: str, page: str, tmp_path: Path) -> None:
    """A screenshot of the report's top (summary, model card, training curves, first figures)
    is not blank: dark text on white, and the figures' colours (saturated pixels) drawn."""
    file, shot = tmp_path / "report.html", tmp_path / "shot.png"
    file.write_text(page)
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--proxy-server=127.0.0.1:9",
         "--virtual-time-budget=20000", f"--screenshot={shot}", "--window-size=900,2600", file.as_uri()],
        capture_output=True, timeout=180, check=True,
    )
    pixels = read_png(shot).astype(np.int64)
    assert pixels.shape[:2] == (2600, 900)
    grey = pixels.mean(-1)
    assert grey.std() > 10  # not one flat colour
    assert (grey < 100).mean() > 0.002  # text
    saturated = pixels.max(-1) - pixels.min(-1) > 80
    assert saturated.sum() > 2000  # coloured curves and heatmaps: the figures were drawn


def test_ci_installs_chromium_before_the_readmes_set_up_and_test_commands() -> None:
    root = Path(__file__).resolve().parents[1]
    script = (root / ".ci" / "run").read_text().splitlines()
    readme = (root / "README.md").read_text()
    setup, test = 'pip install -c constraints.txt -e ".[dev,ray]"', "pytest"
    assert f"{setup}   # set up" in readme and f"\n{test}  " in readme  # the README's commands, as CI runs them
    assert script[-2:] == [setup, test]
    install = next(i for i, line in enumerate(script) if "apt-get install" in line and "chromium" in line)
    assert install < script.index(setup)
    assert any(line.startswith('export CI="${CI:-true}"') for line in script)  # so the browser tests cannot skip
