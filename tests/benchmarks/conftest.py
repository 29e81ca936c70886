"""Running a script of ``benchmarks/`` as a user does: in its folder, with ``src`` on the path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


class BenchmarkRun:
    """Runs ``python benchmarks/SCRIPT ARGS --json-out FILE`` and returns its stdout and JSON result."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    def __call__(self, script: str, *args: str) -> tuple[str, dict[str, Any]]:
        out = self.tmp_path / f"{Path(script).stem}.json"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        done = subprocess.run(
            [sys.executable, script, *args, "--json-out", str(out)],
            cwd=ROOT / "benchmarks", env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout, json.loads(out.read_text())


@pytest.fixture
def run_script(tmp_path: Path) -> BenchmarkRun:
    """Runs one benchmark script end to end (see :class:`BenchmarkRun`)."""
    return BenchmarkRun(tmp_path)
