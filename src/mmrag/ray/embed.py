"""``embed_dataset``: an embedding column on a Ray Dataset, one encoder per actor.

The column's values go through the same input resolver as
:meth:`mmrag.Encoder.embed_images` (and are its input): image bytes (what
``ray.data.read_binary_files`` reads), paths, URLs or data URIs; or texts for
``modality="text"``. So a vector equals ``load_encoder(model).embed_images``
of the same file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmrag.encoders import load_encoder
from mmrag.errors import InvalidInputError
from mmrag.inputs import Modality
from mmrag.options import LoadOptions
from mmrag.ray.cluster import ActorPlan, import_ray

__all__ = ["BatchEmbedder", "embed_dataset"]


class BatchEmbedder:
    """The Ray actor of :func:`embed_dataset`: loads one encoder, embeds one column of each batch.

    Args:
        model: What :func:`mmrag.load_encoder` takes.
        options: Loading options.
        column: The input column.
        modality: ``"image"`` or ``"text"``.
        output_column: The column the vectors go to.
    """

    def __init__(self, model: str, options: LoadOptions, column: str, modality: Modality, output_column: str) -> None:
        self.encoder = load_encoder(model, options=options)
        self.column = column
        self.output_column = output_column
        self.embed = self.encoder.embed_images if modality == "image" else self.encoder.embed_texts

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``batch`` with the vectors of its input column added (float32, one row per item)."""
        if self.column not in batch:
            raise InvalidInputError(f"column {self.column!r} is not in the dataset (columns: {sorted(batch)})")
        items = [value.item() if isinstance(value, np.generic) else value for value in batch[self.column]]
        vectors = self.embed(items) if items else np.zeros((0, self.encoder.dim), dtype=np.float32)
        return {**batch, self.output_column: np.asarray(vectors, dtype=np.float32)}


def embed_dataset(
    ds: Any,
    *,
    model: str,
    column: str = "bytes",
    modality: Modality = "image",
    output_column: str = "embedding",
    batch_size: int | None = None,
    concurrency: int | None = None,
    num_gpus: float | None = None,
    options: LoadOptions | None = None,
    **overrides: Any,
) -> Any:
    """Add an embedding column to a Ray Dataset with one encoder per actor.

    Args:
        ds: A :class:`ray.data.Dataset`, e.g. ``ray.data.read_binary_files(folder,
            include_paths=True)`` (columns ``bytes`` and ``path``).
        model: A model alias, hub id or directory, loaded once in each actor.
        column: The input column: image bytes, paths or URLs (or texts).
        modality: ``"image"`` or ``"text"``.
        output_column: Name of the new column (float32 vectors of length ``encoder.dim``).
        batch_size: Rows per actor call; default the encoder's ``batch_size``.
        concurrency: Number of actors; default one per GPU (1 without GPUs).
        num_gpus: GPUs per actor; default 1 where the cluster has GPUs, else 0.
        options: Loading options (device, dtype, batch size, ...).
        **overrides: :class:`~mmrag.LoadOptions` fields, e.g. ``dtype="float16"``.

    Returns:
        The lazy dataset with ``output_column`` added (nothing runs until it is consumed).

    Raises:
        mmrag.MissingDependencyError: Ray is not installed.
        mmrag.InvalidInputError: An unknown ``modality`` or a bad ``concurrency``.

    Example:
        >>> import ray
        >>> ds = ray.data.read_binary_files("photos/", include_paths=True)  # doctest: +SKIP
        >>> embedded = embed_dataset(ds, model="demo")  # doctest: +SKIP
        >>> embedded.take(1)[0]["embedding"].shape  # doctest: +SKIP
        (512,)
    """
    import_ray()
    if modality not in ("image", "text"):
        raise InvalidInputError(f"modality must be 'image' or 'text', got {modality!r}")
    load = LoadOptions.merge(options, overrides)
    actors = ActorPlan(concurrency, num_gpus)
    return ds.map_batches(
        BatchEmbedder,
        fn_constructor_args=(model, load, column, modality, output_column),
        batch_size=batch_size or load.batch_size or 32,
        batch_format="numpy",
        **actors.map_arguments(),
    )
