"""scripts/train.py explains itself before the train extra is installed."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Runs the script as `python scripts/train.py ARGS` would, with torch made unimportable.
WITHOUT_TORCH = (
    "import runpy, sys; sys.modules['torch'] = None; sys.argv = ['scripts/train.py', *sys.argv[1:]]; "
    "runpy.run_path('scripts/train.py', run_name='__main__')"
)


def _run(*args: str) -> subprocess.CompletedProcess:
    # the tools as `make install-dev` installs them: importable, whatever the current folder
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tools")])}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env
    )


def test_help_lists_every_flag_without_torch():
    done = _run("--help")
    assert done.returncode == 0, done.stderr
    flags = ("--task", "--member", "--export-only", "--teacher", "--device", "--channels", "--lr", "--suspect-weight")
    for flag in flags:
        assert flag in done.stdout
    lines = done.stdout.splitlines()
    assert any(line.strip().startswith("--repo /tmp/wide/repo") for line in lines)  # the example's 2nd line
    assert lines[-1] == (
        "note: training needs the train extra (torch is missing): pip install -e 'tools[train]' or make install-dev"
    )


def test_training_without_torch_names_the_extra():
    done = _run("--task", "smile")
    assert done.returncode == 2
    assert done.stderr.startswith("error: training needs the train extra (torch is missing)")
