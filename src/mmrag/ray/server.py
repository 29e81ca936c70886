"""``ChromaServer``: where a Chroma server is, in a form Ray can ship to every actor (a client cannot be pickled)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from mmrag.errors import InvalidInputError

__all__ = ["ChromaServer"]


@dataclass(frozen=True)
class ChromaServer:
    """The address of a Chroma server; :meth:`connect` makes a ``chromadb.HttpClient`` to it.

    Attributes:
        host: Host name or address.
        port: TCP port.
        ssl: Whether to use HTTPS.
        headers: Extra HTTP headers (e.g. an auth token).
        tenant: The Chroma tenant.
        database: The Chroma database.
    """

    host: str
    port: int
    ssl: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    tenant: str = "default_tenant"
    database: str = "default_database"

    @classmethod
    def from_url(cls, url: str) -> ChromaServer:
        """The server at ``http://HOST:PORT`` (or ``https://``; port default 8000).

        Raises:
            mmrag.InvalidInputError: ``url`` is not an http(s) URL with a host.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInputError(f"a Chroma server URL looks like http://HOST:PORT, got {url!r}")
        try:
            port = parts.port or 8000
        except ValueError as exc:
            raise InvalidInputError(f"bad port in Chroma server URL {url!r}") from exc
        return cls(parts.hostname, port, ssl=parts.scheme == "https")

    @classmethod
    def of(cls, client: Any) -> ChromaServer:
        """The server a ``chromadb.HttpClient`` (or a URL string, or a :class:`ChromaServer`) talks to.

        Raises:
            mmrag.InvalidInputError: ``client`` is an embedded (in-process) client, or not a client at all.
        """
        if isinstance(client, ChromaServer):
            return client
        if isinstance(client, str):
            return cls.from_url(client)
        try:
            settings = client.get_settings()
        except Exception as exc:  # not a Chroma client
            raise InvalidInputError(f"expected a chromadb.HttpClient or a URL, got {type(client).__name__}") from exc
        host = getattr(settings, "chroma_server_host", None)
        if not host:
            raise InvalidInputError(
                "index_folder_ray writes into a Chroma server (every actor connects to it): pass "
                "chromadb.HttpClient(host=..., port=...) or a URL, not an embedded client"
            )
        return cls(
            str(host),
            int(getattr(settings, "chroma_server_http_port", None) or 8000),
            ssl=bool(getattr(settings, "chroma_server_ssl_enabled", False)),
            headers=dict(getattr(settings, "chroma_server_headers", None) or {}),
            tenant=str(getattr(client, "tenant", None) or "default_tenant"),
            database=str(getattr(client, "database", None) or "default_database"),
        )

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (or ``https://``)."""
        return f"{'https' if self.ssl else 'http'}://{self.host}:{self.port}"

    def connect(self) -> Any:
        """A new ``chromadb.HttpClient`` to this server.

        Raises:
            ConnectionError: The server cannot be reached (the message names it).
        """
        import chromadb

        try:
            return chromadb.HttpClient(
                host=self.host,
                port=self.port,
                ssl=self.ssl,
                headers=self.headers or None,
                tenant=self.tenant,
                database=self.database,
            )
        except ValueError as exc:  # chromadb: "Could not connect to a Chroma server"
            raise ConnectionError(f"cannot reach the Chroma server at {self.url}: {exc}") from exc
