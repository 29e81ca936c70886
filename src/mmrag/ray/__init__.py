"""Ray Data for mmrag: embed a Ray Dataset, or index a folder into a Chroma server, with one encoder per actor.

Needs ``pip install "mmrag[ray]"``. Ray is imported only when a function runs.

* :func:`embed_dataset`: an ``embedding`` column on a Ray Dataset
  (``ray.data.read_binary_files`` bytes, or a column of paths, URLs or texts),
  equal to ``load_encoder(model).embed_images`` of the same files.
* :func:`index_folder_ray`: ``MultimodalStore.index_folder`` into a Chroma
  server, embedded and written by the actors: the same ids, metadata and
  collections, so ``MultimodalStore(encoder, client=chromadb.HttpClient(...))``
  searches the result and a later ``index_folder`` skips everything.
* :func:`init_ray`: start a local Ray (all GPUs of the machine) or join a cluster.
* :class:`ChromaServer`: a Chroma server's address, shipped to the actors.

Actors take one GPU each where the cluster has GPUs (one actor per GPU by
default), and run on CPUs otherwise (one actor by default).

Example:
    >>> import chromadb
    >>> from mmrag.ray import index_folder_ray
    >>> client = chromadb.HttpClient(host="127.0.0.1", port=8000)  # doctest: +SKIP
    >>> index_folder_ray("photos/", model="demo", client=client).summary()  # doctest: +SKIP
    'added 200, updated 0, skipped 0, removed 0, failed 0'
"""

from __future__ import annotations

from mmrag.ray.cluster import ActorPlan, init_ray
from mmrag.ray.embed import embed_dataset
from mmrag.ray.folder import index_folder_ray
from mmrag.ray.server import ChromaServer

__all__ = ["ActorPlan", "ChromaServer", "embed_dataset", "index_folder_ray", "init_ray"]
