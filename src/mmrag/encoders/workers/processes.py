"""Worker processes and their shared memory, seen from the parent: start, feed, read replies, stop.

Each worker is a fresh interpreter started by :mod:`subprocess` running
:data:`BOOTSTRAP`; it owns a ring of image-sized slots in one
:class:`~multiprocessing.shared_memory.SharedMemory` segment that the parent
creates and unlinks. Messages are pickles over the worker's stdin and stdout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pickle
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from typing import IO, Any

import numpy as np

from mmrag.encoders.preprocess import ImageSpec
from mmrag.errors import ImageInputError
from mmrag.inputs import ImageLimits

__all__ = ["BOOTSTRAP", "PICKLE_PROTOCOL", "PoolState", "Reply"]

_START_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 5.0
PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL

# Run by ``python -c`` in each worker: read the init message, make ``mmrag`` and
# ``mmrag.encoders`` importable as bare namespaces (their ``__init__`` imports
# the whole library), then serve.
BOOTSTRAP = """\
import pickle, sys, types
init = pickle.load(sys.stdin.buffer)
sys.path[:] = init["sys_path"]
for name, path in init["packages"]:
    module = types.ModuleType(name)
    module.__path__ = list(path)
    sys.modules[name] = module
from mmrag.encoders.workers.serve import worker_main
worker_main(init)
"""


@dataclass
class Reply:
    """A worker's answer to one task: where its pixels are, or why there are none."""

    task_id: int
    worker: int
    slot: int
    error: BaseException | None
    owner: Any = None  # what :meth:`PoolState.submit` was given: who the pixels are for


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    memory: shared_memory.SharedMemory
    slots: np.ndarray  # (slots, 3, h, w) uint8 view of ``memory``
    free: list[int]
    torch_imported: bool | None = None  # reported by the worker when ready
    in_flight: dict[int, tuple[int, Any]] = field(default_factory=dict)  # task id -> (slot, owner)
    reader: threading.Thread | None = None
    sent_limits: ImageLimits | None = None
    sent_cwd: str | None = None


class PoolState:
    """The running workers of one pool; created by :meth:`start`, ended by :meth:`shutdown`."""

    def __init__(self, workers: list[_Worker], inbox: queue.SimpleQueue[tuple[int, Any]]) -> None:
        self.workers = workers
        self.inbox = inbox
        self._next_task = 0
        self._closed = False

    @classmethod
    def start(cls, spec: ImageSpec, count: int, slots: int, fast: bool) -> PoolState:
        """Create the shared memory, launch ``count`` workers and wait until each has said it is ready."""
        import mmrag
        import mmrag.encoders

        inbox: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        image_bytes = int(np.prod(spec.output_shape))
        workers: list[_Worker] = []
        state = cls(workers, inbox)
        try:
            for number in range(count):
                memory = shared_memory.SharedMemory(create=True, size=slots * image_bytes)
                try:
                    process = subprocess.Popen(
                        [sys.executable, "-c", BOOTSTRAP], stdin=subprocess.PIPE, stdout=subprocess.PIPE
                    )
                except BaseException:
                    memory.close()
                    memory.unlink()
                    raise
                view = np.ndarray((slots, *spec.output_shape), dtype=np.uint8, buffer=memory.buf)
                worker = _Worker(process, memory, view, list(range(slots)))
                workers.append(worker)
                init = {
                    "sys_path": list(sys.path),
                    "packages": [("mmrag", list(mmrag.__path__)), ("mmrag.encoders", list(mmrag.encoders.__path__))],
                    "memory": memory.name,
                    "slots": slots,
                    "spec": dataclasses.asdict(spec),  # plain values: unpickled before mmrag is importable
                    "fast": fast,
                }
                _send(process, init)
                worker.reader = threading.Thread(
                    target=_read_replies, args=(number, process.stdout, inbox), name=f"mmrag-image-reader-{number}",
                    daemon=True,
                )  # fmt: skip
                worker.reader.start()
            state._await_ready()
        except BaseException:
            state.shutdown()
            raise
        return state

    def _await_ready(self) -> None:
        waiting = set(range(len(self.workers)))
        deadline = time.monotonic() + _START_TIMEOUT_S
        while waiting:
            try:
                number, message = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"image workers did not start within {_START_TIMEOUT_S:.0f} s") from None
            if message is None:
                code = _reap(self.workers[number].process)
                raise RuntimeError(f"an image worker exited during start-up (exit code {code}; see its stderr)")
            if message[0] == "ready":
                self.workers[number].torch_imported = bool(message[2])
                waiting.discard(number)

    def sync(self, limits: ImageLimits, cwd: str | None) -> None:
        """Send the call's limits and working directory to workers that have other ones."""
        for worker in self.workers:
            if worker.sent_limits != limits or worker.sent_cwd != cwd:
                self._send(worker, ("context", limits, cwd))
                worker.sent_limits, worker.sent_cwd = limits, cwd

    def has_free_slot(self) -> bool:
        """Whether some worker can take another task."""
        return any(worker.free for worker in self.workers)

    @property
    def busy(self) -> bool:
        """Whether any task is in flight (so a blocking :meth:`replies` returns)."""
        return any(worker.in_flight for worker in self.workers)

    def submit(self, item: Any, index: int, owner: Any = None) -> int:
        """Send one item to the worker with the most free slots; return its task id.

        ``owner`` comes back as :attr:`Reply.owner`, so whoever reads the reply
        knows where its pixels go.
        """
        number = max(range(len(self.workers)), key=lambda n: len(self.workers[n].free))
        worker = self.workers[number]
        slot = worker.free.pop()
        task_id = self._next_task
        self._next_task += 1
        worker.in_flight[task_id] = (slot, owner)
        self._send(worker, ("task", task_id, slot, item, index))
        return task_id

    def _send(self, worker: _Worker, message: Any) -> None:
        try:
            _send(worker.process, message)
        except (OSError, ValueError) as exc:  # a broken or closed pipe: the worker is gone
            code = worker.process.poll()
            raise RuntimeError(
                f"an image worker (pid {worker.process.pid}) is gone (exit code {code}); the worker pool was shut down"
            ) from exc

    def replies(self, *, block: bool) -> list[Reply]:
        """Replies that have arrived (waiting for at least one when ``block``)."""
        messages = []
        if block:
            messages.append(self.inbox.get())
        while True:
            try:
                messages.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        return [self._reply(number, message) for number, message in messages]

    def _reply(self, number: int, message: Any) -> Reply:
        worker = self.workers[number]
        if message is None:
            code = _reap(worker.process)
            pending = len(worker.in_flight)
            raise RuntimeError(
                f"an image worker (pid {worker.process.pid}) exited unexpectedly with code {code}"
                f" while preparing {pending} image(s); the worker pool was shut down"
            )
        kind, task_id = message[0], message[1]
        slot, owner = worker.in_flight.pop(task_id)
        error: BaseException | None = None
        if kind == "bad":
            error = ImageInputError(message[2], index=message[3], item=message[4])
        elif kind == "fail":
            error = RuntimeError(f"image worker failed:\n{message[2]}")
        return Reply(task_id, number, slot, error, owner)

    def copy_out(self, reply: Reply, target: np.ndarray) -> None:
        target[...] = self.workers[reply.worker].slots[reply.slot]

    def release(self, reply: Reply) -> None:
        self.workers[reply.worker].free.append(reply.slot)

    def shutdown(self) -> None:
        """Stop every worker (politely, then by force), join the readers, unlink the shared memory."""
        if self._closed:
            return
        self._closed = True
        for worker in self.workers:
            with contextlib.suppress(OSError, ValueError):
                _send(worker.process, ("stop",))
            with contextlib.suppress(OSError, ValueError):
                if worker.process.stdin is not None:
                    worker.process.stdin.close()
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        for worker in self.workers:
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            if worker.reader is not None:
                worker.reader.join(timeout=_STOP_TIMEOUT_S)
            if worker.process.stdout is not None:
                worker.process.stdout.close()
            del worker.slots  # the numpy view must go before the buffer can close
            worker.memory.close()
            with contextlib.suppress(FileNotFoundError):
                worker.memory.unlink()
        self.workers.clear()


def _reap(process: subprocess.Popen[bytes]) -> int:
    """The exit code of a worker whose pipe closed; kill it if it lingers (a corrupted stream)."""
    try:
        return process.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def _send(process: subprocess.Popen[bytes], message: Any) -> None:
    stream = process.stdin
    if stream is None:  # pragma: no cover - always a pipe
        raise RuntimeError("image worker has no stdin")
    pickle.dump(message, stream, protocol=PICKLE_PROTOCOL)
    stream.flush()


def _read_replies(number: int, stream: IO[bytes] | None, inbox: queue.SimpleQueue[tuple[int, Any]]) -> None:
    """Reader thread: forward every reply of worker ``number``; ``None`` when its pipe closes."""
    try:
        while stream is not None:
            inbox.put((number, pickle.load(stream)))
    except (EOFError, OSError, ValueError, pickle.UnpicklingError):
        pass
    inbox.put((number, None))
