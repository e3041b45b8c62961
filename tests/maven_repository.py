"""A Maven repository on loopback serving the jars of the tests' jar cache, slowly if asked: a
real HTTP server for the jar fetch's tests (a download that lasts long enough to be stopped,
a file that fails its checksum, one that is missing), with no traffic to Maven Central."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import JARS_DIR


class Repository:
    """``url`` serves ``<any path>/<name>.jar`` from the files named ``name`` under
    ``JARS_DIR`` (or ``overrides``), ``bytes_per_s`` per connection; ``requests`` counts the
    GETs begun."""

    def __init__(self, bytes_per_s: float | None, overrides: dict[str, bytes]) -> None:
        self.files = {jar.name: jar for jar in JARS_DIR.glob("*/*.jar")}
        self.overrides = overrides
        self.bytes_per_s = bytes_per_s
        self.requests = 0
        self.url = ""


@contextmanager
def repository(
    bytes_per_s: float | None = None, overrides: dict[str, bytes] | None = None
) -> Iterator[Repository]:
    repo = Repository(bytes_per_s, overrides or {})

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            repo.requests += 1
            name = self.path.rsplit("/", 1)[-1]
            if name in repo.overrides:
                body = repo.overrides[name]
            elif name in repo.files:
                body = repo.files[name].read_bytes()
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            step = 16_384
            for start in range(0, len(body), step):
                try:
                    self.wfile.write(body[start : start + step])
                except OSError:
                    return  # the client went away
                if repo.bytes_per_s:
                    time.sleep(step / repo.bytes_per_s)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    repo.url = f"http://127.0.0.1:{server.server_address[1]}/maven2/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield repo
    finally:
        server.shutdown()
        server.server_close()


def cache_jars() -> None:
    """The broker's and Spark's connector's jars in the tests' cache (to serve them)."""
    from clickstream.broker.node import KAFKA_JARS
    from clickstream.maven import resolve
    from clickstream.spark.session import kafka_connector

    for jar_set in (KAFKA_JARS, kafka_connector()):
        resolve(jar_set, JARS_DIR, java=Path("java"))
