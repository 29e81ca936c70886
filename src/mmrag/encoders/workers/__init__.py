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
  dies takes the pool down (``RuntimeError`` for the call it was serving); the
  next call starts a new one, and a call suspended between batches meanwhile
  resubmits its unfinished items to the new workers.

Example:
    >>> spec = image_spec(encoder.image_processor)
    >>> with ImageWorkerPool(spec, num_workers=4) as pool:
    ...     pixels = pool.prepare(["a.jpg", "b.png"])  # uint8, (2, 3, 224, 224)
"""

from __future__ import annotations

from mmrag.encoders.workers.pool import (
    MAX_DEFAULT_WORKERS,
    SEND_MAX_PIXELS,
    WORKER_MIN_IMAGES,
    ImageWorkerPool,
    default_num_workers,
)
from mmrag.encoders.workers.stream import ImageBatchStream

__all__ = [
    "MAX_DEFAULT_WORKERS",
    "SEND_MAX_PIXELS",
    "WORKER_MIN_IMAGES",
    "ImageBatchStream",
    "ImageWorkerPool",
    "default_num_workers",
]
