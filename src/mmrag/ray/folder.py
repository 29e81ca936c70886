"""``index_folder_ray``: ``MultimodalStore.index_folder`` into a Chroma server, embedded and written by Ray actors.

The driver walks the folder and compares it with the store exactly as
``index_folder`` does (:meth:`~mmrag.store.folder.FolderIndexer.plan`): the
same files are skipped, re-embedded or removed. The files to embed become a
Ray Dataset; each actor loads one encoder, connects to the server itself and
reads, embeds and writes its batches (:meth:`~mmrag.store.folder.FolderIndexer.index_chunk`),
so ids, metadata and collections are those of ``index_folder`` and a later
``index_folder`` of the same folder skips everything. The driver deletes the
stale records last, once every batch is written.

Failures
    Writes are idempotent (content-derived ids), so a batch Ray retries on a
    restarted actor (a worker killed) writes the same records again. A run
    interrupted in any other way leaves records a re-run keeps or removes
    (see :mod:`mmrag.store.folder`). A Chroma server that goes away raises a
    :class:`ConnectionError` naming it; run again once it is back.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mmrag.encoders import LazyEncoder, load_encoder
from mmrag.options import LoadOptions
from mmrag.ray.cluster import ActorPlan, import_ray, init_ray
from mmrag.ray.server import ChromaServer
from mmrag.store import IndexReport, MultimodalStore
from mmrag.store.folder import FileTodo, FolderIndexer

__all__ = ["FolderWriter", "index_folder_ray"]

_COUNTS = ("added", "updated", "removed", "embedded")


class FolderWriter:
    """The Ray actor of :func:`index_folder_ray`: one encoder and one store connection; indexes batches of files.

    Args:
        model: What :func:`mmrag.load_encoder` takes.
        options: Loading options.
        server: The Chroma server.
        collection: The logical store name.
        root: The folder being indexed.
        on_batch: Called (in the actor) before each batch, e.g. for tests.
    """

    def __init__(
        self,
        model: str,
        options: LoadOptions,
        server: ChromaServer,
        collection: str,
        root: str,
        on_batch: Callable[[], None] | None = None,
    ) -> None:
        encoder = load_encoder(model, options=options)
        self.store = MultimodalStore(encoder, client=server.connect(), collection=collection)
        self.indexer = FolderIndexer.for_store(self.store)
        self.root = Path(root)
        self.on_batch = on_batch

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Index one batch of planned files; one summary row (counts, ids, failures as JSON, a lost server)."""
        if self.on_batch is not None:
            self.on_batch()
        todo: list[FileTodo] = [pickle.loads(bytes(item)) for item in batch["todo"]]
        report = IndexReport()
        lost = ""
        try:
            self.indexer.index_chunk(todo, self.root, report)
        except ConnectionError as exc:  # the server went away: the driver stops the run with this message
            lost = str(exc)
        row: dict[str, Any] = {name: [getattr(report, name)] for name in _COUNTS}
        row["lost"] = [lost]
        row["files"] = [len(todo)]
        row["ids"] = [json.dumps(report.ids)]
        row["failed"] = [json.dumps(report.failed)]
        return {name: np.asarray(values) for name, values in row.items()}


def index_folder_ray(
    folder: str | os.PathLike[str],
    *,
    model: str,
    client: Any,
    collection: str = "mmrag",
    recursive: bool = True,
    follow_links: bool = False,
    batch_size: int | None = None,
    concurrency: int | None = None,
    num_gpus: float | None = None,
    options: LoadOptions | None = None,
    show_progress: bool | None = None,
    on_batch: Callable[[], None] | None = None,
    **overrides: Any,
) -> IndexReport:
    """Index a folder into a Chroma server with Ray actors, as ``MultimodalStore.index_folder`` would.

    Starts a local Ray (all CPUs and GPUs of this machine) unless Ray is
    already initialised; call :func:`mmrag.ray.init_ray` (or :func:`ray.init`)
    first to use a cluster. The folder must be at the same path on every node
    (a shared file system).

    Args:
        folder: The folder.
        model: A model alias, hub id or directory; loaded once in each actor
            (the driver reads only its config and processor, to open the store;
            a family whose signature needs the weights, such as a
            Visualized-BGE ``.pth``, is loaded there too, on the CPU).
        client: A ``chromadb.HttpClient``, a ``http://HOST:PORT`` URL or a
            :class:`~mmrag.ray.ChromaServer`.
        collection: The logical store name (as in ``MultimodalStore``).
        recursive: Walk sub-folders too.
        follow_links: Also follow links that leave the folder.
        batch_size: Files per actor call (each call writes its records);
            default the encoder's ``batch_size``.
        concurrency: Number of actors; default one per GPU (1 without GPUs).
        num_gpus: GPUs per actor; default 1 where the cluster has GPUs, else 0.
        options: Loading options.
        show_progress: Show a progress bar; default: when stderr is a terminal.
        on_batch: Called in the actor before each batch (a test hook).
        **overrides: :class:`~mmrag.LoadOptions` fields.

    Returns:
        The :class:`~mmrag.store.IndexReport`, as ``index_folder`` gives it.

    Raises:
        NotADirectoryError: ``folder`` is not a directory.
        ConnectionError: The Chroma server cannot be reached, or went away during the run.
        mmrag.MissingDependencyError: Ray is not installed.
        mmrag.StoreMismatchError: The collection was built with another model.
    """
    ray = import_ray()
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {str(folder)!r}")
    server = ChromaServer.of(client)
    load = LoadOptions.merge(options, overrides)
    init_ray("local")
    actors = ActorPlan(concurrency, num_gpus)
    driver = LazyEncoder(model, options=load.replace(device="cpu"))  # opens the store, never embeds
    with MultimodalStore(driver, client=server.connect(), collection=collection) as store:
        indexer = FolderIndexer.for_store(store)
        plan = indexer.plan(root, recursive=recursive, follow_links=follow_links)
        size = batch_size or store.encoder.batch_size
        if plan.todo:
            rows = [{"todo": pickle.dumps(item)} for item in plan.todo]
            dataset = ray.data.from_items(rows, override_num_blocks=min(len(rows), max(1, len(rows) // size)))
            written = dataset.map_batches(
                FolderWriter,
                fn_constructor_args=(model, load, server, collection, str(root), on_batch),
                batch_size=size,
                batch_format="numpy",
                **actors.map_arguments(),
            )
            _collect(written, plan.report, total=len(rows), show_progress=show_progress, desc=root.name or str(root))
        return indexer.finish(plan)


def _collect(written: Any, report: IndexReport, *, total: int, show_progress: bool | None, desc: str) -> None:
    """Run the dataset and add every batch's summary to ``report``."""
    import sys

    from tqdm.auto import tqdm

    enabled = sys.stderr.isatty() if show_progress is None else show_progress
    progress = tqdm(total=total, desc=f"indexing {desc}", unit="file", disable=not enabled, leave=False)
    try:
        for batch in written.iter_batches(batch_size=None, batch_format="numpy"):
            for i in range(len(batch["files"])):
                if batch["lost"][i]:
                    raise ConnectionError(f"index_folder_ray: {batch['lost'][i]}")
                for name in _COUNTS:
                    setattr(report, name, getattr(report, name) + int(batch[name][i]))
                report.ids += json.loads(str(batch["ids"][i]))
                report.failed += [(str(source), str(reason)) for source, reason in json.loads(str(batch["failed"][i]))]
                progress.update(int(batch["files"][i]))
    finally:
        progress.close()
