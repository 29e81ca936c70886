"""Every example in README.md runs, in order, in a fresh directory, as a newcomer would type it.

Python blocks run as scripts; in bash blocks every `mmrag ...` line runs as a command
(a line ending in `&`, such as `mmrag serve ... &`, is started in the background and
stopped when the test ends).
Only setup lines are not run here: `make ...` (CI itself runs `make test`; `make demo`
is `mmrag demo` after setup, which runs below) and `pip install ...` (this environment
is the installed one).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
SETUP_PREFIXES = ("make ", "pip install ")
DEMO_MODEL = Path(__file__).parents[1] / "src" / "mmrag" / "models" / "demo" / "config.json"


def readme_steps() -> list[tuple[str, str]]:
    steps: list[tuple[str, str]] = []
    for lang, body in BLOCK.findall(README.read_text(encoding="utf-8")):
        if lang == "python":
            steps.append(("python", body))
        elif lang == "bash":
            for line in body.splitlines():
                command = line.split("  #")[0].strip()
                if not command or command.startswith(SETUP_PREFIXES):
                    continue
                steps.append(("bash", command))
    return steps


def test_readme_has_examples() -> None:
    kinds = [kind for kind, _ in readme_steps()]
    assert kinds.count("python") >= 3 and kinds.count("bash") >= 3
    commands = [step for kind, step in readme_steps() if kind == "bash"]
    unknown = [c for c in commands if not c.startswith(("mmrag ", "python "))]
    assert not unknown, f"README commands the test does not know how to run: {unknown}"


@pytest.mark.skipif(not DEMO_MODEL.exists(), reason="the bundled demo model is not built")
def test_readme_examples_run(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    mmrag_exe = shutil.which("mmrag") or str(Path(sys.executable).with_name("mmrag"))
    background: list[subprocess.Popen[bytes]] = []
    try:
        for kind, step in readme_steps():
            if kind == "python":
                command = [sys.executable, "-c", step]
            else:
                words = shlex.split(step.removesuffix("&"))
                if words[0] == "python":
                    pytest.fail(f"README runs a python script the test does not know: {step}")
                command = [mmrag_exe, *words[1:]]
                if step.endswith("&"):
                    background.append(
                        subprocess.Popen(
                            command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                        )
                    )
                    continue
            result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
            assert result.returncode == 0, (
                f"README step failed:\n{step}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
    finally:
        for process in background:
            process.terminate()
            process.wait(timeout=60)
