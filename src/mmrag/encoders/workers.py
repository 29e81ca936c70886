"""A pool of worker processes that decode and preprocess images into shared memory.

:class:`ImageWorkerPool` turns image inputs into the ``uint8`` pixels of a
model's input size (see :mod:`mmrag.encoders.preprocess`) on several CPU cores.
It is started once (on first use) and reused until :meth:`~ImageWorkerPool.close`.

How it works
------------
* Each worker is a fresh Python interpreter (``sys.executable``) started with
  :mod:`subprocess`, not through :mod:`multiprocessing`: multiprocessing's
  ``spawn`` and ``forkserver`` re-import the parent's ``__main__`` in every
  worker, which re-runs an unguarded user script (loading the model again in
  each worker), and ``fork`` copies a process that holds torch's thread pools,
  CUDA state and tokenizer threads. A worker imports only numpy, Pillow and the
  mmrag modules it needs (:mod:`mmrag.inputs`, :mod:`mmrag.errors`,
  :mod:`mmrag.encoders.preprocess`, this module), never torch; the ``mmrag``
  package ``__init__`` is not run there.
* Items travel to a worker over its stdin as small pickles: file paths, URLs
  and strings as they are, encoded bytes as bytes. Inputs are resolved in the
  worker by :func:`mmrag.encoders.preprocess.prepare_image`, i.e. by
  :mod:`mmrag.inputs` with the caller's :class:`~mmrag.ImageLimits`.
* Pixels come back through shared memory: each worker owns a small ring of
  ``slots_per_worker`` image-sized slots in one
  :class:`multiprocessing.shared_memory.SharedMemory` segment that the parent
  creates and unlinks. The worker writes the ``uint8`` CHW pixels into the slot
  the parent named and replies with a few bytes; the parent copies the slot into
  the result and hands the slot out again. Work goes to whichever worker has a
  free slot, so slow images do not hold up the others.
* PIL images and numpy arrays are resolved in the parent (checks, EXIF
  orientation, RGB), then sent to a worker as an RGB array when they have at
  most ``send_max_pixels`` pixels (default :data:`SEND_MAX_PIXELS`), and
  preprocessed in the parent otherwise: sending frees the parent's CPU 2-4x,
  but for big images the copy and pipe cost more CPU in total than the resize
  they move (figures at :data:`SEND_MAX_PIXELS`). Memoryviews and file objects
  are read in the parent (they cannot be pickled) and sent as bytes.
* A bad item raises :class:`~mmrag.ImageInputError` for the first failing
  position in input order, naming its index (offset by ``start``) and item, as
  :func:`mmrag.resolve_images` would; nothing partial is returned. A worker that
  dies takes the pool down (``RuntimeError``); the next call starts a new one.

Example:
    >>> spec = image_spec(encoder.image_processor)
    >>> with ImageWorkerPool(spec, num_workers=4) as pool:
    ...     pixels = pool.prepare(["a.jpg", "b.png"])  # uint8, (2, 3, 224, 224)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings
import weakref
from collections import deque
from collections.abc import Sequence, Sized
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from typing import IO, Any

import numpy as np
from PIL import Image

from mmrag.encoders.preprocess import ImageSpec, prepare_image
from mmrag.errors import ImageInputError
from mmrag.inputs import ImageInput, ImageLimits, as_items, read_image_bytes, resolve_image

__all__ = ["MAX_DEFAULT_WORKERS", "SEND_MAX_PIXELS", "ImageWorkerPool", "default_num_workers"]

MAX_DEFAULT_WORKERS = 8
"""The most workers :func:`default_num_workers` picks."""

SEND_MAX_PIXELS = 1_000_000
"""Default of ``ImageWorkerPool(send_max_pixels=)``: decoded images up to this size go to a worker.

Measured on 2 busy cores (tiny 224-px CLIP spec; parent CPU / total CPU per image, sent vs kept):
640x480 1.7 / 6.7 ms vs 6.2 / 6.8 ms; 1024x768 5.4 / 19 ms vs 13 / 13 ms; 2000x1500 21 / 66 ms vs
45 / 45 ms. Sending always frees the parent (2-4x), but above about a megapixel the copy, pickle
and pipe cost more CPU in total than the resize they move.
"""

_START_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 5.0
_PICKLE = pickle.HIGHEST_PROTOCOL

# Run by ``python -c`` in each worker: read the init message, make ``mmrag`` and
# ``mmrag.encoders`` importable as bare namespaces (their ``__init__`` imports
# the whole library), then serve.
_BOOTSTRAP = """\
import pickle, sys, types
init = pickle.load(sys.stdin.buffer)
sys.path[:] = init["sys_path"]
for name, path in init["packages"]:
    module = types.ModuleType(name)
    module.__path__ = list(path)
    sys.modules[name] = module
from mmrag.encoders.workers import _worker_main
_worker_main(init)
"""


def default_num_workers() -> int:
    """One worker per CPU core this process may use, at most :data:`MAX_DEFAULT_WORKERS`; 0 on one core.

    Returns:
        The number of worker processes :class:`ImageWorkerPool` starts by default.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores < 2 else min(cores, MAX_DEFAULT_WORKERS)


class ImageWorkerPool:
    """Decode and preprocess images on worker processes into ``uint8`` model-size pixels.

    Workers start on the first :meth:`prepare` call with at least two items
    (single items are prepared in the calling thread: no round trip), and are
    reused until :meth:`close`. ``num_workers=0`` does everything in the calling
    thread; so does a pool whose workers could not start (with a
    ``RuntimeWarning``). Safe to call from several threads (calls run one at a
    time).

    Args:
        spec: The model's :class:`~mmrag.encoders.preprocess.ImageSpec`.
        num_workers: Worker processes; ``None`` for :func:`default_num_workers`,
            ``0`` for none.
        fast: Fast decoding (JPEG DCT scaling, box reduction; not exact).
        slots_per_worker: Images each worker may have in flight (its slots of
            shared memory).
        send_max_pixels: Decoded inputs (PIL images, arrays) up to this many
            pixels are preprocessed on a worker, bigger ones in the calling
            thread (see :data:`SEND_MAX_PIXELS`).

    Raises:
        ValueError: ``num_workers`` is negative or ``slots_per_worker`` < 1.

    Example:
        >>> pool = ImageWorkerPool(spec)
        >>> pool.prepare(paths, start=64).shape
        (32, 3, 224, 224)
        >>> pool.close()
    """

    def __init__(
        self,
        spec: ImageSpec,
        *,
        num_workers: int | None = None,
        fast: bool = False,
        slots_per_worker: int = 3,
        send_max_pixels: int = SEND_MAX_PIXELS,
    ) -> None:
        workers = default_num_workers() if num_workers is None else num_workers
        if workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {workers}")
        if slots_per_worker < 1:
            raise ValueError(f"slots_per_worker must be >= 1, got {slots_per_worker}")
        self.spec = spec
        self.fast = fast
        self.num_workers = workers
        self.slots_per_worker = slots_per_worker
        self.send_max_pixels = send_max_pixels
        self._lock = threading.Lock()
        self._state: _PoolState | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._start_failed = False
        self.startup_s: float | None = None
        """Seconds the last start of the workers took (``None`` before any)."""

    # ------------------------------------------------------------------ public
    @property
    def running(self) -> bool:
        """Whether worker processes are up."""
        return self._state is not None

    @property
    def worker_pids(self) -> tuple[int, ...]:
        """Process ids of the running workers (empty when none run)."""
        state = self._state
        return tuple(worker.process.pid for worker in state.workers) if state else ()

    def prepare(self, items: Sequence[ImageInput], *, limits: ImageLimits | None = None, start: int = 0) -> np.ndarray:
        """Resolve, decode and preprocess a batch of images, all or nothing.

        Args:
            items: Any :data:`mmrag.ImageInput` values, in order.
            limits: Limits to enforce; ``ImageLimits()`` when omitted.
            start: Index of ``items[0]`` in the caller's whole input, so errors
                name the caller's index.

        Returns:
            A new ``uint8`` array of shape ``(len(items), 3, height, width)``,
            row ``i`` for ``items[i]``.

        Raises:
            mmrag.ImageInputError: For the first item (in input order) that
                cannot be resolved or decoded; its ``index`` is ``start + i``.
            mmrag.NotASequenceError: ``items`` is a single item.
            RuntimeError: A worker died; the pool is shut down (the next call
                starts new workers).
        """
        batch = as_items(items, "images")
        active = limits or ImageLimits()
        out = np.empty((len(batch), *self.spec.output_shape), dtype=np.uint8)
        with self._lock:
            if len(batch) >= 2 and self._ensure_started():
                assert self._state is not None
                jobs = [
                    _route(item, active, start + position, self.send_max_pixels) for position, item in enumerate(batch)
                ]
                try:
                    self._run(self._state, jobs, out, active)
                except ImageInputError:
                    raise
                except BaseException:
                    self._shutdown()  # a dead worker or an interrupt: the protocol state is unknown
                    raise
            else:
                for position, item in enumerate(batch):
                    prepare_image(
                        item, self.spec, limits=active, index=start + position, fast=self.fast, out=out[position]
                    )
        return out

    def close(self) -> None:
        """Stop the workers and free their shared memory. The pool restarts on the next :meth:`prepare`."""
        with self._lock:
            self._shutdown()

    def __enter__(self) -> ImageWorkerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"ImageWorkerPool(num_workers={self.num_workers}, fast={self.fast}, running={self.running}, "
            f"spec={self.spec.describe()!r})"
        )

    # --------------------------------------------------------------- internals
    def _ensure_started(self) -> bool:
        """Start the workers if needed; ``False`` means: work in-process."""
        if self.num_workers == 0 or self._start_failed:
            return False
        if self._state is not None:
            return True
        began = time.perf_counter()
        try:
            state = _PoolState.start(self.spec, self.num_workers, self.slots_per_worker, self.fast)
        except (OSError, RuntimeError) as exc:
            self._start_failed = True
            warnings.warn(
                f"mmrag could not start image worker processes ({exc}); preparing images in-process",
                RuntimeWarning,
                stacklevel=3,
            )
            return False
        self.startup_s = time.perf_counter() - began
        self._state = state
        self._finalizer = weakref.finalize(self, state.shutdown)
        return True

    def _shutdown(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # runs state.shutdown once
            self._finalizer = None
        self._state = None

    def _run(self, state: _PoolState, jobs: list[_Job], out: np.ndarray, limits: ImageLimits) -> None:
        """Feed ``jobs`` to the workers (remote) and to this thread (local); raise the first error in order."""
        try:
            cwd: str | None = os.getcwd()
        except OSError:  # the working directory was removed: only absolute paths can work anyway
            cwd = None
        state.sync(limits, cwd)
        remote = deque(position for position, job in enumerate(jobs) if job.remote)
        local = deque(position for position, job in enumerate(jobs) if not job.remote)
        errors: dict[int, BaseException] = {}
        for position, job in enumerate(jobs):
            if job.error is not None:
                errors[position] = job.error
        first_error = min(errors, default=len(jobs))
        in_flight: dict[int, int] = {}  # task id -> position
        while True:
            while remote and remote[0] < first_error and state.has_free_slot():
                position = remote.popleft()
                in_flight[state.submit(jobs[position].item, jobs[position].index)] = position
            if local and local[0] < first_error:
                position = local.popleft()
                try:
                    prepare_image(
                        jobs[position].item, self.spec, limits=limits, index=jobs[position].index,
                        fast=self.fast, out=out[position],
                    )  # fmt: skip
                except ImageInputError as exc:
                    errors[position] = exc
                    first_error = min(first_error, position)
                block = False
            else:
                block = True
            if not in_flight:
                if (remote and remote[0] < first_error) or (local and local[0] < first_error):
                    continue
                break
            for reply in state.replies(block=block):
                position = in_flight.pop(reply.task_id)
                if reply.error is None:
                    state.copy_out(reply, out[position])
                else:
                    errors[position] = reply.error
                    first_error = min(first_error, position)
                state.release(reply)
        if errors:
            raise errors[min(errors)]


# --------------------------------------------------------------------------- #
# Jobs
# --------------------------------------------------------------------------- #


@dataclass
class _Job:
    """One item of a call: what to send (or do here), and its caller-facing index."""

    item: Any
    index: int
    remote: bool
    error: ImageInputError | None = None


def _route(item: ImageInput, limits: ImageLimits, index: int, send_max_pixels: int) -> _Job:
    """Decide where an item is prepared; read or resolve here what cannot (or should not) be pickled as is."""
    if isinstance(item, (Image.Image, np.ndarray)):
        try:
            image = resolve_image(item, limits=limits, index=index)  # checks, orientation, RGB: a new image
        except ImageInputError as exc:
            return _Job(item, index, remote=False, error=exc)
        if image.width * image.height <= send_max_pixels:
            pixels = np.asarray(image)  # an RGB uint8 array is an input the worker resolves as is
            image.close()
            return _Job(pixels, index, remote=True)
        return _Job(image, index, remote=False)
    if isinstance(item, (str, bytes)):
        return _Job(item, index, remote=True)
    if isinstance(item, os.PathLike):
        path = os.fspath(item)
        return _Job(pathlib.Path(path) if isinstance(path, str) else item, index, remote=isinstance(path, str))
    if isinstance(item, (bytearray, memoryview)) or hasattr(item, "read"):
        try:
            data = read_image_bytes(item, limits=limits, index=index)  # enforces max_bytes before copying
        except ImageInputError as exc:
            return _Job(item, index, remote=False, error=exc)
        return _Job(data, index, remote=True)
    return _Job(item, index, remote=False)  # unsupported: the resolver words the error


# --------------------------------------------------------------------------- #
# Parent side: processes, pipes, shared memory
# --------------------------------------------------------------------------- #


@dataclass
class _Reply:
    task_id: int
    worker: int
    slot: int
    error: BaseException | None


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    memory: shared_memory.SharedMemory
    slots: np.ndarray  # (slots, 3, h, w) uint8 view of ``memory``
    free: list[int]
    torch_imported: bool | None = None  # reported by the worker when ready
    in_flight: dict[int, int] = field(default_factory=dict)  # task id -> slot
    reader: threading.Thread | None = None
    sent_limits: ImageLimits | None = None
    sent_cwd: str | None = None


class _PoolState:
    """The running workers of one pool; created by :meth:`start`, ended by :meth:`shutdown`."""

    def __init__(self, workers: list[_Worker], inbox: queue.SimpleQueue[tuple[int, Any]]) -> None:
        self.workers = workers
        self.inbox = inbox
        self._next_task = 0
        self._closed = False

    @classmethod
    def start(cls, spec: ImageSpec, count: int, slots: int, fast: bool) -> _PoolState:
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
                        [sys.executable, "-c", _BOOTSTRAP], stdin=subprocess.PIPE, stdout=subprocess.PIPE
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
        return any(worker.free for worker in self.workers)

    def submit(self, item: Any, index: int) -> int:
        """Send one item to the worker with the most free slots; return its task id."""
        number = max(range(len(self.workers)), key=lambda n: len(self.workers[n].free))
        worker = self.workers[number]
        slot = worker.free.pop()
        task_id = self._next_task
        self._next_task += 1
        worker.in_flight[task_id] = slot
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

    def replies(self, *, block: bool) -> list[_Reply]:
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

    def _reply(self, number: int, message: Any) -> _Reply:
        worker = self.workers[number]
        if message is None:
            code = _reap(worker.process)
            pending = len(worker.in_flight)
            raise RuntimeError(
                f"an image worker (pid {worker.process.pid}) exited unexpectedly with code {code}"
                f" while preparing {pending} image(s); the worker pool was shut down"
            )
        kind, task_id = message[0], message[1]
        slot = worker.in_flight.pop(task_id)
        error: BaseException | None = None
        if kind == "bad":
            error = ImageInputError(message[2], index=message[3], item=message[4])
        elif kind == "fail":
            error = RuntimeError(f"image worker failed:\n{message[2]}")
        return _Reply(task_id, number, slot, error)

    def copy_out(self, reply: _Reply, target: np.ndarray) -> None:
        target[...] = self.workers[reply.worker].slots[reply.slot]

    def release(self, reply: _Reply) -> None:
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
    pickle.dump(message, stream, protocol=_PICKLE)
    stream.flush()


def _read_replies(number: int, stream: IO[bytes] | None, inbox: queue.SimpleQueue[tuple[int, Any]]) -> None:
    """Reader thread: forward every reply of worker ``number``; ``None`` when its pipe closes."""
    try:
        while stream is not None:
            inbox.put((number, pickle.load(stream)))
    except (EOFError, OSError, ValueError, pickle.UnpicklingError):
        pass
    inbox.put((number, None))


# --------------------------------------------------------------------------- #
# Worker side
# --------------------------------------------------------------------------- #


def _worker_main(init: dict[str, Any]) -> None:
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
