"""mmrag's loggers: standard :mod:`logging`, one ``"mmrag"`` tree, silent until you ask.

Every module logs to a child of the ``"mmrag"`` logger (``"mmrag.encoders"``,
``"mmrag.store"``, ...), obtained with :func:`logger`. Following the library
convention, the ``"mmrag"`` logger carries only a :class:`logging.NullHandler`:
importing mmrag never configures logging or prints anything. To see what it
does, configure logging as usual, or call :func:`log_to_stderr`::

    import logging
    logging.basicConfig(level=logging.INFO)          # everything, mmrag included
    logging.getLogger("mmrag").setLevel(logging.DEBUG)

    import mmrag.logs
    mmrag.logs.log_to_stderr("INFO")                 # just mmrag's messages

What is logged: at INFO the device and dtype a model loads with; at WARNING
texts truncated to the model's length and files a folder index skipped; at
DEBUG cache hits and misses.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["LOGGER_NAME", "log_to_stderr", "logger"]

LOGGER_NAME = "mmrag"
"""The root of mmrag's logger tree."""

_root = logging.getLogger(LOGGER_NAME)
if not any(isinstance(handler, logging.NullHandler) for handler in _root.handlers):
    _root.addHandler(logging.NullHandler())  # library etiquette: never print unless the application asks

_stderr_handler: logging.Handler | None = None


def logger(name: str = "") -> logging.Logger:
    """The logger for one part of mmrag.

    Args:
        name: The part, e.g. ``"encoders"`` or a module's ``__name__``
            (``"mmrag.store.folder"``); empty for the ``"mmrag"`` root.

    Returns:
        ``logging.getLogger("mmrag.<name>")`` (a name already under
        ``"mmrag"`` is used as is).

    Example:
        >>> logger("encoders").name
        'mmrag.encoders'
        >>> logger("mmrag.store.folder").name
        'mmrag.store.folder'
    """
    name = name.strip(".")
    if not name or name == LOGGER_NAME:
        return _root
    if name.startswith(LOGGER_NAME + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{LOGGER_NAME}.{name}")


def log_to_stderr(level: int | str = logging.INFO) -> logging.Handler:
    """Print mmrag's log messages to stderr (a notebook shows them under the cell).

    Calling it again replaces the handler it added before, so the level can
    be changed and messages are never printed twice.

    Args:
        level: The lowest level shown: a :mod:`logging` level or its name
            (``"DEBUG"``, ``"INFO"``, ``"WARNING"``).

    Returns:
        The handler it installed on the ``"mmrag"`` logger.

    Raises:
        ValueError: ``level`` is not a known level name.

    Example:
        >>> handler = log_to_stderr("WARNING")
    """
    global _stderr_handler
    if isinstance(level, str):
        named = logging.getLevelName(level.strip().upper())
        if not isinstance(named, int):
            raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL")
        level = named
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s", "%H:%M:%S"))
    handler.setLevel(level)
    if _stderr_handler is not None:
        _root.removeHandler(_stderr_handler)
    _root.addHandler(handler)
    _stderr_handler = handler
    if _root.level == logging.NOTSET or _root.level > level:
        _root.setLevel(level)
    return handler
