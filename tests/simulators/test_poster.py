"""The simulators' plain HTTP/1.1 poster against a real TCP server: answers with a length or
chunked, connections kept alive and reused, one the server closed while idle replaced without
failing the request, and httpx's errors when nothing listens."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import httpx
import pytest

from clickstream.simulators.poster import PlainPoster, poster

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]
"""Answers one request (its head and body); False closes the connection after it."""


async def serve(handler: Handler) -> tuple[asyncio.Server, int, list[int]]:
    """A server on a free port; the list counts the connections it accepted."""
    accepted: list[int] = []

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                body = await reader.readexactly(length)
                if not await handler(head + body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], accepted


def test_answers_by_length_and_chunked_on_one_kept_alive_connection() -> None:
    async def handler(request: bytes, writer: asyncio.StreamWriter) -> bool:
        body = request.split(b"\r\n\r\n", 1)[1]
        if b"chunked" in body:
            writer.write(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                b'4\r\n{"a"\r\n6\r\n: 1}\r\n\r\n0\r\n\r\n'
            )
        else:
            writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\nx-seen: yes\r\n\r\nhello")
        await writer.drain()
        return True

    async def main() -> None:
        server, port, accepted = await serve(handler)
        client = PlainPoster("127.0.0.1", port, connections=1, timeout_s=5)
        url = httpx.URL(f"http://127.0.0.1:{port}/v1/events?key=k")
        first = await client.post(url, b"plain", {"content-type": "application/json"})
        second = await client.post(url, b"chunked", {})
        await client.aclose()
        server.close()
        assert (first.status_code, first.content, first.headers["x-seen"]) == (201, b"hello", "yes")
        assert (second.status_code, second.content) == (200, b'{"a": 1}\r\n')
        assert second.is_success
        assert len(accepted) == 1  # the second request went on the first one's connection

    asyncio.run(main())


def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    async def handler(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        return False  # closes without saying so, as a keep-alive timeout does

    async def main() -> None:
        server, port, accepted = await serve(handler)
        client = PlainPoster("127.0.0.1", port, connections=1, timeout_s=5)
        url = httpx.URL(f"http://127.0.0.1:{port}/v1/events")
        answers = []
        for _ in range(3):
            answers.append((await client.post(url, b"x", {})).content)
            await asyncio.sleep(0.1)
        await client.aclose()
        server.close()
        assert answers == [b"ok"] * 3
        assert len(accepted) == 3

    asyncio.run(main())


def test_nothing_listening_is_httpx_connect_error_and_https_goes_through_httpx() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]

    async def main() -> None:
        client = poster(httpx.URL(f"http://127.0.0.1:{port}/"), 2, timeout_s=5)
        assert isinstance(client, PlainPoster)
        with pytest.raises(httpx.ConnectError):
            await client.post(httpx.URL(f"http://127.0.0.1:{port}/v1/events"), b"x", {})
        secure = poster(httpx.URL("https://collector.example/"), 2, timeout_s=5)
        assert not isinstance(secure, PlainPoster)
        await secure.aclose()

    asyncio.run(main())
