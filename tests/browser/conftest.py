"""Real headless Chromium (Debian's package) driven by Playwright, and a local page server."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium_path() -> str | None:
    return os.environ.get("CLICKSTREAM_TEST_CHROMIUM") or shutil.which("chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium for a test module. Skipped without Chromium, except in CI.

    Module scope, not session: Playwright's sync API keeps an event loop running in the main
    thread while it is open, and ``asyncio.run`` in later tests would refuse to start."""
    executable = chromium_path()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Chromium for the browser tests: apt-get install chromium")
        pytest.skip(
            "headless Chromium not found: apt-get install chromium "
            "(or set CLICKSTREAM_TEST_CHROMIUM)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def page_server(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], str]]:
    """``page_server({"index.html": html, ...})`` serves the pages on 127.0.0.1 and returns
    the base URL (another origin than the collector's)."""
    servers: list[ThreadingHTTPServer] = []

    def serve(pages: dict[str, str]) -> str:
        root = tmp_path / f"site{len(servers)}"
        root.mkdir(parents=True, exist_ok=True)
        for name, html in pages.items():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(html)
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()
