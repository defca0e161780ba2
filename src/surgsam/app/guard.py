"""Who may talk to the app: a Host / Origin check in front of every request (DNS rebinding).

A page on ``evil.example`` can make the browser of someone running the app resolve
``evil.example`` to 127.0.0.1 and then talk to the app as if it were its own site; the only trace
is the ``Host`` header (``evil.example:7860``) and, on scripted requests, the ``Origin``.
:class:`HostGuard` refuses (HTTP 403, or a closed WebSocket) any request whose ``Host`` is not
one of the names the server answers to, and any request carrying an ``Origin`` that names
another host. Pure ASGI: no Gradio or FastAPI import.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["HostGuard", "HostPolicy", "split_host"]

#: Names every server answers to (with its port): this machine.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
#: Bind addresses meaning "every interface": not a name a client uses.
_WILDCARDS = ("", "0.0.0.0", "::", "[::]")


def split_host(value: str) -> tuple[str, int | None] | None:
    """``"name:port"`` / ``"[v6]:port"`` / ``"name"`` -> ``(name, port)``, lower case, IPv6
    without brackets; None when it is not a well-formed host."""
    value = value.strip().lower()
    if not value or any(c in value for c in " /\\@?#\t"):
        return None
    port: int | None = None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
        if rest:
            if not rest.startswith(":"):
                return None
            port = _port(rest[1:])
            if port is None:
                return None
        return name, port
    if value.count(":") > 1:  # a bare IPv6 address (as written in --host ::1)
        try:
            return str(ipaddress.IPv6Address(value)), None
        except ValueError:
            return None
    name, sep, rest = value.partition(":")
    if sep:
        port = _port(rest)
        if port is None:
            return None
    return (name, port) if name else None


def _port(text: str) -> int | None:
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


@dataclass(frozen=True)
class HostPolicy:
    """The hosts a server on ``port`` answers to.

    ``names`` must come with the server's port (a ``Host`` without one only when the port is
    80); ``extra`` holds the ``--allowed-host`` entries as ``(name, port)``: with a port they
    match exactly, without one they match the bare name (a reverse proxy) or the server's port.
    """

    port: int
    names: frozenset[str]
    extra: frozenset[tuple[str, int | None]] = frozenset()

    @classmethod
    def for_server(cls, bind: str, port: int, allowed: Iterable[str] = ()) -> HostPolicy:
        """Loopback names, the bound address (unless it is a wildcard) and ``allowed``."""
        names = set(LOOPBACK_NAMES)
        if bind.strip().lower() not in _WILDCARDS:
            parsed = split_host(bind)
            if parsed is None:
                raise ValueError(f"cannot use {bind!r} as a host name")
            names.add(parsed[0])
        extra = set()
        for entry in allowed:
            parsed = split_host(entry)
            if parsed is None:
                raise ValueError(f"--allowed-host {entry!r} is not a host name (name, name:port or [v6]:port)")
            extra.add(parsed)
        return cls(port, frozenset(names), frozenset(extra))

    def allows(self, host: str | None) -> bool:
        """Whether a ``Host`` header value (``name[:port]``) names this server."""
        parsed = split_host(host) if host else None
        if parsed is None:
            return False
        name, port = parsed
        if name in self.names and (port == self.port or (port is None and self.port == 80)):
            return True
        return (name, port) in self.extra or (port in (None, self.port) and (name, None) in self.extra)

    def allows_origin(self, origin: str) -> bool:
        """Whether an ``Origin`` header names this server (``null`` and other schemes do not)."""
        parts = urlsplit(origin.strip())
        if parts.scheme not in ("http", "https") or parts.path not in ("", "/") or parts.query:
            return False
        return self.allows(parts.netloc)

    def describe(self) -> str:
        """The accepted ``Host`` values, for the start-up message."""
        shown = [f"[{n}]:{self.port}" if ":" in n else f"{n}:{self.port}" for n in sorted(self.names)]
        shown += [(f"[{n}]" if ":" in n else n) + (f":{p}" if p else "") for n, p in sorted(self.extra, key=str)]
        return ", ".join(shown)

    def check(self, headers: dict[str, str]) -> str | None:
        """Why a request with these (lower-case) headers is refused; None when it is allowed."""
        host = headers.get("host")
        if not self.allows(host):
            return f"Host {host!r} is not this server"
        origin = headers.get("origin")
        if origin is not None and not self.allows_origin(origin):
            return f"Origin {origin!r} is not this server"
        return None


class HostGuard:
    """ASGI middleware applying a :class:`HostPolicy` to every HTTP and WebSocket request."""

    def __init__(self, app: Any, policy: HostPolicy):
        self.app = app
        self.policy = policy

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") in ("http", "websocket"):
            headers: dict[str, str] = {}
            for key, value in scope.get("headers", ()):
                name = key.decode("latin-1").lower()
                if name in ("host", "origin"):
                    if name in headers:  # two Host (or Origin) headers: ambiguous, refused
                        headers[name] = "\x00"
                    else:
                        headers[name] = value.decode("latin-1")
            why = self.policy.check(headers)
            if why is not None:
                await _refuse(scope, send, why)
                return
        await self.app(scope, receive, send)


async def _refuse(scope: dict, send: Any, why: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = f"403 Forbidden: {why} (see surgsam app --allowed-host)\n".encode("utf-8", "replace")
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
