"""Ray itself for mmrag: the lazy import, starting or joining a cluster, and how many encoder actors to run.

Each actor loads one encoder. Where the cluster has GPUs every actor takes
one (``num_gpus=1``) and there is one actor per GPU by default; on a cluster
without GPUs the actors run on CPUs and there is one by default (an encoder
uses every core of its machine already).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from mmrag.errors import InvalidInputError, MissingDependencyError

__all__ = ["ActorPlan", "init_ray"]


def import_ray() -> ModuleType:
    """The ``ray`` module with Ray Data, or a clear error naming the extra to install."""
    try:
        import ray
        import ray.data  # Ray Data must be there too (ray[data])
    except ImportError as exc:
        raise MissingDependencyError.for_extra("ray", "mmrag.ray", exc.name or "ray") from exc
    return ray


def init_ray(address: str | None = "local", **kwargs: Any) -> None:
    """Start or join Ray once per process (a session already started is kept).

    Args:
        address: ``"local"`` (or ``None``) starts Ray on this machine with all
            its CPUs and GPUs; ``"auto"`` or ``"ray://HOST:10001"`` (any
            address :func:`ray.init` takes) joins a running cluster.
        **kwargs: More :func:`ray.init` arguments (``num_cpus=2``, ...).

    Raises:
        mmrag.MissingDependencyError: Ray is not installed (``pip install "mmrag[ray]"``).
    """
    ray = import_ray()
    if ray.is_initialized():
        return
    kwargs.setdefault("include_dashboard", False)
    kwargs.setdefault("log_to_driver", False)
    ray.init(address=None if address in (None, "local") else address, **kwargs)


class ActorPlan:
    """How many encoder actors to run and what each one takes.

    Args:
        concurrency: Number of actors; default one per GPU of the cluster (1 without GPUs).
        num_gpus: GPUs per actor; default 1 where the cluster has GPUs, else 0.

    Raises:
        mmrag.InvalidInputError: ``concurrency`` is not a positive int, or ``num_gpus`` is negative.
    """

    def __init__(self, concurrency: int | None = None, num_gpus: float | None = None) -> None:
        ray = import_ray()
        if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int)):
            raise InvalidInputError(f"concurrency must be a positive int, got {concurrency!r}")
        if concurrency is not None and concurrency < 1:
            raise InvalidInputError(f"concurrency must be at least 1, got {concurrency}")
        if num_gpus is not None and num_gpus < 0:
            raise InvalidInputError(f"num_gpus must be at least 0, got {num_gpus}")
        gpus = int(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0
        self.num_gpus: float = float(num_gpus) if num_gpus is not None else (1.0 if gpus else 0.0)
        if concurrency is None:
            concurrency = max(1, int(gpus // self.num_gpus)) if self.num_gpus else 1
        self.concurrency: int = concurrency

    def map_arguments(self) -> dict[str, Any]:
        """The ``compute`` (a fixed pool of actors) and ``num_gpus`` (when any) keywords of ``Dataset.map_batches``."""
        ray = import_ray()
        arguments: dict[str, Any] = {"compute": ray.data.ActorPoolStrategy(size=self.concurrency)}
        if self.num_gpus:
            arguments["num_gpus"] = self.num_gpus
        return arguments

    def __repr__(self) -> str:
        return f"ActorPlan(concurrency={self.concurrency}, num_gpus={self.num_gpus})"
