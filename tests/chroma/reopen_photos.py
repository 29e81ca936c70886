"""Run in a fresh process by test_embedding_function.py: reopen a persisted collection and query it.

Usage: ``python reopen_photos.py DB_PATH QUERY_IMAGE``. Prints one JSON object:
what querying did before ``import mmrag.chroma`` (Chroma's fallback), whether
importing registered the function, the stored config rebuilt, the results of a
text and a URI query, and every network connection or DNS lookup attempted
(each is refused).
"""

from __future__ import annotations

import json
import socket
import sys

attempts: list[str] = []
_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo


def _local(host: object) -> bool:
    return not isinstance(host, str) or host in ("", "localhost", "127.0.0.1", "::1")


def _guarded_connect(self: socket.socket, address: object) -> None:
    host = address[0] if isinstance(address, tuple) else address
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(host):
        attempts.append(f"connect {address!r}")
        raise OSError(f"network disabled in this test: connect {address!r}")
    return _connect(self, address)  # type: ignore[arg-type]  # address is what the caller gave


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    try:
        _guarded_connect(self, address)
    except OSError:
        return 1
    return 0


def _guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
    if not _local(host if not isinstance(host, bytes) else host.decode()):
        attempts.append(f"getaddrinfo {host!r}")
        raise OSError(f"network disabled in this test: getaddrinfo {host!r}")
    return _getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]  # passed through unchanged


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]  # the wrong type is what the test passes
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]  # the wrong type is what the test passes
socket.getaddrinfo = _guarded_getaddrinfo  # type: ignore[assignment]  # the wrong type is what the test passes


def main(db_path: str, query_image: str) -> None:
    """Reopen ``photos`` without an embedding function, before and after ``import mmrag.chroma``."""
    import chromadb
    from chromadb.config import Settings
    from chromadb.utils.data_loaders import ImageLoader
    from chromadb.utils.embedding_functions import known_embedding_functions

    client = chromadb.PersistentClient(path=db_path, settings=Settings(anonymized_telemetry=False))
    unregistered = client.get_collection("photos")
    try:
        unregistered.query(query_texts=["a red circle"], n_results=3)
        fallback = "no error"
    except Exception as exc:
        fallback = f"{type(exc).__name__}: {exc}"
    registered_before = "mmrag" in known_embedding_functions

    import mmrag.chroma

    photos = client.get_collection("photos", data_loader=ImageLoader())
    rebuilt = photos.configuration["embedding_function"]
    by_text = photos.query(query_texts=["a red circle"], n_results=3)
    by_uri = photos.query(query_uris=[query_image], n_results=3)
    print(
        json.dumps(
            {
                "fallback": fallback,
                "registered_before": registered_before,
                "registered_after": known_embedding_functions.get("mmrag") is mmrag.chroma.MultimodalEmbeddingFunction,
                "rebuilt_type": type(rebuilt).__name__,
                "rebuilt_config": rebuilt.get_config(),
                "by_text": {"ids": by_text["ids"][0], "distances": by_text["distances"][0]},
                "by_uri": {"ids": by_uri["ids"][0], "distances": by_uri["distances"][0]},
                "network_attempts": attempts,
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
