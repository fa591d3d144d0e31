"""``import circuits`` and config validation stay light: no torch until a model is needed, so
the command line can check its input at once (timings: benchmarks/bench_cli_start.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_importing_circuits_and_its_config_does_not_import_torch() -> None:
    code = "import sys, circuits, circuits.config, circuits.errors, circuits.runtime, circuits.atomic; print('torch' in sys.modules)"
    assert run_python(code) == "False"


def test_validating_a_bad_config_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from circuits.config import RunConfig\n"
        "from circuits.errors import ConfigError\n"
        "try:\n"
        "    RunConfig().with_overrides(['train.nope=1'])\n"
        "except ConfigError:\n"
        "    print('torch' in sys.modules)\n"
    )
    assert run_python(code) == "False"


def test_the_cli_refuses_a_bad_config_key_without_importing_torch() -> None:
    code = (
        "import sys\n"
        "from lenscli.app import app\n"
        "try:\n"
        "    app(['train', '--set', 'train.nope=1'], prog_name='lenscli')\n"
        "except SystemExit as e:\n"
        "    print(e.code, 'torch' in sys.modules)\n"
    )
    assert run_python(code) == "2 False"


def test_the_cli_refuses_a_missing_checkpoint_without_importing_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from lenscli.app import app\n"
        "try:\n"
        f"    app(['decompose', '--ckpt', {str(tmp_path / 'missing')!r}], prog_name='lenscli')\n"
        "except SystemExit as e:\n"
        "    print(e.code, 'torch' in sys.modules)\n"
    )
    assert run_python(code) == "2 False"


def test_lazy_names_resolve_to_the_objects_of_their_submodules() -> None:
    import circuits
    import circuits.train.loss  # the subpackage is importable, and stays the attribute
    from circuits.config import RunConfig
    from circuits.train.loop import train

    assert circuits.RunConfig is RunConfig
    assert circuits.train_model is train and circuits.train is sys.modules["circuits.train"]
    assert set(circuits.__all__) <= set(dir(circuits))
