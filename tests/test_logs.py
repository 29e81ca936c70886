"""mmrag logs through the standard ``logging`` tree "mmrag", and prints nothing until the application asks."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from mmrag import logs

SRC = str(Path(__file__).parents[1] / "src")


def test_importing_mmrag_installs_no_handler_that_prints() -> None:
    script = (
        "import logging\n"
        "import mmrag, mmrag.logs, mmrag.cache, mmrag.progress, mmrag.store.hits\n"
        "tree = [logging.getLogger(name) for name in logging.root.manager.loggerDict if name.startswith('mmrag')]\n"
        "printing = [h for lg in tree for h in getattr(lg, 'handlers', []) if not isinstance(h, logging.NullHandler)]\n"
        "assert not printing, printing\n"
        "assert not logging.getLogger().handlers, logging.getLogger().handlers\n"
        "assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger('mmrag').handlers)\n"
        "mmrag.logs.logger('store').warning('skipped 3 files')\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert "skipped 3 files" not in done.stderr  # a library warning stays silent until logging is configured


def test_loggers_are_children_of_mmrag() -> None:
    assert logs.logger().name == "mmrag"
    assert logs.logger("encoders").name == "mmrag.encoders"
    assert logs.logger("mmrag.store.folder").name == "mmrag.store.folder"
    assert logs.logger("encoders").parent is logging.getLogger("mmrag")


def test_log_to_stderr_shows_messages_once(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger("mmrag")
    level = root.level
    try:
        logs.log_to_stderr("INFO")
        handler = logs.log_to_stderr("DEBUG")  # replaces the first: nothing printed twice
        logs.logger("encoders").info("loaded on cpu in float32")
        printed = capsys.readouterr().err
        assert printed.count("loaded on cpu in float32") == 1
        assert "mmrag.encoders INFO" in printed
        with pytest.raises(ValueError, match="unknown log level"):
            logs.log_to_stderr("LOUD")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
