"""The worker process's side: read tasks, prepare images into shared-memory slots, reply.

Runs in a fresh interpreter started by :mod:`mmrag.encoders.workers.processes`;
imports numpy, Pillow and the light mmrag modules only, never torch.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import sys
import threading
import traceback
from collections.abc import Sized
from multiprocessing import shared_memory
from typing import IO, Any

import numpy as np

from mmrag.encoders.preprocess import ImageSpec, prepare_image
from mmrag.errors import ImageInputError
from mmrag.inputs import ImageLimits

__all__ = ["worker_main"]

_PICKLE = pickle.HIGHEST_PROTOCOL


def worker_main(init: dict[str, Any]) -> None:
    """Serve tasks until told to stop or the parent goes away (runs in the worker process)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the protocol
    spec = ImageSpec(**init["spec"])
    fast: bool = init["fast"]
    memory = _attach(init["memory"])
    slots = np.ndarray((init["slots"], *spec.output_shape), dtype=np.uint8, buffer=memory.buf)
    tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
    reader = threading.Thread(target=_read_tasks, args=(sys.stdin.buffer, tasks), name="mmrag-task-reader")
    reader.start()
    limits = ImageLimits()

    def reply(message: tuple[Any, ...]) -> None:
        pickle.dump(message, replies, protocol=_PICKLE)
        replies.flush()

    reply(("ready", os.getpid(), "torch" in sys.modules))
    try:
        while True:
            message = tasks.get()
            if message is None or message[0] == "stop":
                break
            if message[0] == "context":
                limits = message[1]
                if message[2] is not None:
                    with contextlib.suppress(OSError):
                        os.chdir(message[2])  # relative paths mean what they mean in the parent
                continue
            _, task_id, slot, item, index = message
            try:
                prepare_image(item, spec, limits=limits, index=index, fast=fast, out=slots[slot])
            except ImageInputError as exc:
                reply(("bad", task_id, exc.reason, exc.index, exc.item))
            except Exception:
                reply(("fail", task_id, traceback.format_exc()))
            else:
                reply(("ok", task_id))
    except (BrokenPipeError, OSError):
        pass  # the parent is gone
    finally:
        del slots
        memory.close()
    reader.join()  # it ends on "stop" or when the parent closes the pipe


def _read_tasks(stream: IO[bytes], tasks: queue.SimpleQueue[Any]) -> None:
    """Worker reader thread: read ahead, so the parent's writes never wait on a busy worker.

    Returns after the ``"stop"`` message or at end of input, so that no thread
    is left blocked on stdin when the interpreter exits.
    """
    try:
        while True:
            message = pickle.load(stream)
            tasks.put(message)
            if message[0] == "stop":
                return
    except (EOFError, OSError, ValueError, pickle.UnpicklingError):
        tasks.put(None)


def _attach(name: str) -> shared_memory.SharedMemory:
    """Open the parent's segment without registering it with a resource tracker.

    The parent owns (and unlinks) the segment. Before Python 3.13 attaching
    registers it with the attaching process's resource tracker, which would
    unlink it when the worker exits and warn about a "leak".
    """
    if sys.version_info >= (3, 13):
        options: dict[str, Any] = {"track": False}
        return shared_memory.SharedMemory(name=name, **options)
    from multiprocessing import resource_tracker

    register = resource_tracker.register
    resource_tracker.register = _no_register
    try:
        return shared_memory.SharedMemory(name=name)
    finally:
        resource_tracker.register = register


def _no_register(name: Sized, rtype: str) -> None:
    """Stand-in for ``resource_tracker.register`` while a worker attaches (it never creates segments)."""
