"""A BigQuery emulator (bqemulator, from PyPI) for the tests: one child process per test session,
on free loopback ports, with ``gs://`` URIs read from a local folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clickstream.broker.embedded import free_port

PROJECT = "clickstream-test"


@dataclass(frozen=True)
class Emulator:
    endpoint: str
    gcs_root: Path
    """``gs://bucket/path`` is read from ``gcs_root/bucket/path``."""
    project: str = PROJECT

    def client(self) -> Any:
        from clickstream.sinks.bigquery import _client

        return _client(self.project, self.endpoint)[1]


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    pytest.importorskip("bqemulator", reason="pip install -e '.[dev]' installs the emulator")
    folder = tmp_path_factory.mktemp("bigquery")
    gcs = folder / "gcs"
    gcs.mkdir()
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "tests.bigquery.emulator_main",
        f"--rest-port={port}",
        f"--grpc-port={free_port()}",
        f"--project={PROJECT}",
        "--log-level=warning",
    ]
    env = {**os.environ, "BQEMU_GCS_LOCAL_ROOT": str(gcs)}
    log = (folder / "emulator.log").open("wb")
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the BigQuery emulator exited: {(folder / 'emulator.log').read_text()[-2000:]}"
                )
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the BigQuery emulator did not start within 60 s") from None
                time.sleep(0.1)
        yield Emulator(f"http://127.0.0.1:{port}", gcs)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
