"""The terminal tables read whole at 80 columns: no cell is cut with "…", no line is wider.

A pipe or a small terminal gives rich 80 columns (``COLUMNS=80`` here); each command's table
is rendered there from a real checkpoint, on a world as wide as the default one (10 pixels,
so 11 key positions and every score term)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from circuits.checkpoint import load
from circuits.train import train_to_directory
from conftest import tiny_run_config
from lenscli.app import app
from lenscli.tables import _chunks, print_headline

ENV = {"COLUMNS": "80", "LINES": "50"}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tables") / "run"
    train_to_directory(tiny_run_config(width=10).with_overrides({"train.steps": 20}), out, progress=False)
    return out


def render(*args: str | Path) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args], env=ENV)
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result.stdout


def assert_whole(text: str) -> None:
    assert "…" not in text, text
    too_wide = [line for line in text.splitlines() if len(line) > 80]
    assert too_wide == [], too_wide


def test_decompose_tables_are_whole_at_80_columns(ckpt: Path) -> None:
    text = render("decompose", "--ckpt", ckpt)
    assert_whole(text)
    for word in ("EE", "EP", "BP", "BB", "EP+PP", "scores", "pattern", "CLS", "p9"):
        assert word in text, word


def test_decompose_of_the_text_encoder_is_whole_at_80_columns(ckpt: Path) -> None:
    text = render("decompose", "--ckpt", ckpt, "--encoder", "text")
    assert_whole(text)
    assert "[EOT]" in text and "is on the left of" in text


def test_bias_tables_are_whole_at_80_columns(ckpt: Path) -> None:
    for encoder, words in (("vision", ("left", "right", "rel→left")), ("text", ("subject", "object"))):
        text = render("bias", "--ckpt", ckpt, "--encoder", encoder)
        assert_whole(text)
        assert all(w in text for w in words), (encoder, text)


def test_ablate_table_is_whole_at_80_columns(ckpt: Path) -> None:
    text = render("ablate", "--ckpt", ckpt, "--term", "EP", "--term", "PP", "--term", "BP")
    assert_whole(text)
    assert "unseen-pair" in text


def test_eval_table_is_whole_at_80_columns(ckpt: Path) -> None:
    text = render("eval", "--ckpt", ckpt)
    assert_whole(text)
    assert "unseen-pair" in text


def test_the_headline_of_run_is_whole_at_80_columns(ckpt: Path, capsys, monkeypatch) -> None:
    from circuits.report import headline

    numbers = headline(load(ckpt))
    monkeypatch.setenv("COLUMNS", "80")
    print_headline(numbers)
    text = capsys.readouterr().out
    assert_whole(text)
    for word in ("unseen-pair", "EP+PP+BP", "rel→left", "max elsewhere"):
        assert word in text, word


def test_profile_columns_are_split_into_runs_that_fit() -> None:
    assert _chunks([6, 6, 6], 100) == [[0, 1, 2]]
    assert _chunks([6, 6, 6], 18) == [[0, 1], [2]]
    assert _chunks([30, 6], 10) == [[0], [1]]  # a column wider than the room still gets a run
