"""POSTing the simulators' batches: plain HTTP/1.1 on asyncio streams for ``http://``, httpx for
``https://``.

httpx spends about 0.6 ms of CPU on a small POST; the web simulator sends one request per
visitor's batch (1.2 events on average), so at 1,000 events/s it took most of a core, more than
the collector it loads. :class:`PlainPoster` writes the request bytes itself on kept-alive
connections (at most ``connections``) and reads the answer (``Content-Length`` or chunked):
enough for a collector, a tenth of the cost. A connection that fails is closed, and the request
fails with the error httpx would raise (``ConnectError``, ``ReadError``, ``ReadTimeout``...), so
callers handle both alike.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Protocol

import httpx

MAX_HEAD_BYTES = 64 * 1024
"""An answer's status line and headers: more is not a collector's answer."""


@dataclass(frozen=True)
class Answer:
    status_code: int
    headers: dict[str, str]
    """Lower-case names."""
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class Poster(Protocol):
    async def post(self, url: httpx.URL, content: bytes, headers: dict[str, str]) -> Answer: ...

    async def aclose(self) -> None: ...


def poster(url: httpx.URL, connections: int, timeout_s: float) -> Poster:
    """The poster for ``url``'s scheme."""
    if url.scheme == "http":
        return PlainPoster(url.host, url.port or 80, connections, timeout_s)
    return HttpxPoster(connections, timeout_s)


class HttpxPoster:
    def __init__(self, connections: int, timeout_s: float) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.client = httpx.AsyncClient(timeout=timeout_s, limits=limits)

    async def post(self, url: httpx.URL, content: bytes, headers: dict[str, str]) -> Answer:
        response = await self.client.post(url, content=content, headers=headers)
        return Answer(response.status_code, dict(response.headers), response.content)

    async def aclose(self) -> None:
        await self.client.aclose()


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
FAILURES = (OSError, EOFError, ValueError, TimeoutError, asyncio.LimitOverrunError)
"""What a request on a connection can fail with (EOFError: the answer was cut short)."""


class PlainPoster:
    """HTTP/1.1 POSTs to one ``host:port`` on at most ``connections`` kept-alive connections."""

    def __init__(self, host: str, port: int, connections: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.idle: list[Connection] = []
        self.slots = asyncio.Semaphore(connections)

    async def post(self, url: httpx.URL, content: bytes, headers: dict[str, str]) -> Answer:
        target = url.raw_path.decode("ascii")
        head = [f"POST {target} HTTP/1.1", f"host: {self.host}:{self.port}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head.append(f"content-length: {len(content)}")
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + content
        async with self.slots:
            connection = self._idle_connection()
            reused = connection is not None
            while True:
                error: type[httpx.TransportError] = httpx.ConnectError
                try:
                    async with asyncio.timeout(self.timeout_s):
                        if connection is None:
                            connection = await asyncio.open_connection(self.host, self.port)
                        error = httpx.ReadError
                        reader, writer = connection
                        writer.write(request)
                        answer, keep = await _read_answer(reader)
                    break
                except FAILURES as exc:
                    if connection is not None:
                        connection[1].close()
                    connection = None
                    # A kept-alive connection the server closed as the request went out: it
                    # never read it, so it goes again once, on a new connection.
                    if reused and _closed_unanswered(exc):
                        reused = False
                        continue
                    connected = error is httpx.ReadError
                    if isinstance(exc, TimeoutError):
                        error = httpx.ReadTimeout if connected else httpx.ConnectTimeout
                    elif isinstance(exc, ValueError | asyncio.LimitOverrunError):
                        error = httpx.RemoteProtocolError
                    raise error(f"{type(exc).__name__}: {exc}") from None
                except BaseException:  # cancelled half-way: the connection's state is unknown
                    if connection is not None:
                        connection[1].close()
                    raise
            if keep:
                self.idle.append(connection)
            else:
                writer.close()
            return answer

    def _idle_connection(self) -> Connection | None:
        """A kept-alive connection the server has not closed meanwhile, if there is one."""
        while self.idle:
            reader, writer = self.idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return None

    async def aclose(self) -> None:
        idle, self.idle = self.idle, []
        for _, writer in idle:
            writer.close()
        for _, writer in idle:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _closed_unanswered(exc: BaseException) -> bool:
    """The connection ended before any byte of an answer."""
    if isinstance(exc, asyncio.IncompleteReadError):
        return not exc.partial
    return isinstance(exc, ConnectionResetError | BrokenPipeError)


async def _read_answer(reader: asyncio.StreamReader) -> tuple[Answer, bool]:
    """The answer on ``reader``, and whether its connection may carry the next request."""
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_HEAD_BYTES:
        raise ValueError("answer head too long")
    lines = head.decode("latin-1").split("\r\n")
    version, status, *_ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers from a collector
                break
            chunks.append((await reader.readexactly(size + 2))[:-2])
        content = b"".join(chunks)
    else:
        content = await reader.readexactly(int(headers.get("content-length", "0")))
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    return Answer(int(status), headers, content), keep
