"""A BigQuery emulator (bqemulator, from PyPI) for the tests: one child process per test session,
on free loopback ports, with ``gs://`` URIs read from a local folder; and a fake Cloud Storage
server (gcp-storage-emulator, from PyPI) that keeps its objects as plain files in that same
folder, so what a job writes to ``gs://`` through gcsfs is what the BigQuery emulator loads."""

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
from clickstream.settings import Settings

PROJECT = "clickstream-test"


STORAGE_DIR = ".cloudstorage"
"""Where gcp-storage-emulator keeps the objects under its data folder (its default)."""
BUCKET = "bucket"


@dataclass(frozen=True)
class Emulator:
    endpoint: str
    gcs_data: Path
    """The fake Cloud Storage server's data folder."""
    project: str = PROJECT

    @property
    def gcs_root(self) -> Path:
        """``gs://bucket/path`` is read from ``gcs_root/bucket/path``."""
        return self.gcs_data / STORAGE_DIR

    def client(self) -> Any:
        from clickstream.sinks.bigquery import _client

        return _client(self.project, self.endpoint)[1]


def bigquery_settings(settings: Settings, emulator: Emulator, dataset: str) -> Settings:
    """``settings`` loading into ``dataset`` of the emulator."""
    warehouse = settings.warehouse.model_copy(
        update={
            "bigquery_project": emulator.project,
            "bigquery_dataset": dataset,
            "bigquery_endpoint": emulator.endpoint,
        }
    )
    return settings.model_copy(update={"warehouse": warehouse})


@dataclass(frozen=True)
class FakeGcs:
    url: str
    bucket: str = BUCKET

    def env(self) -> dict[str, str]:
        """What a process needs to reach it through gcsfs: the emulator's address, no
        credentials, and no gRPC bucket-type probe (the fake server speaks JSON only)."""
        return {
            "STORAGE_EMULATOR_HOST": self.url,
            "FSSPEC_GCS_TOKEN": "anon",
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        }


@pytest.fixture(scope="session")
def fake_gcs(bigquery_emulator: Emulator) -> Iterator[FakeGcs]:
    pytest.importorskip("gcp_storage_emulator", reason="pip install -e '.[dev]' installs it")
    from gcp_storage_emulator.server import create_server  # type: ignore[import-untyped]

    port = free_port()
    server = create_server(
        "127.0.0.1", port, in_memory=False, default_bucket=BUCKET,
        data_dir=str(bigquery_emulator.gcs_data),
    )  # fmt: skip
    server.start()
    try:
        yield FakeGcs(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    pytest.importorskip("bqemulator", reason="pip install -e '.[dev]' installs the emulator")
    folder = tmp_path_factory.mktemp("bigquery")
    gcs_data = folder / "gcs"
    gcs = gcs_data / STORAGE_DIR
    gcs.mkdir(parents=True)
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
        yield Emulator(f"http://127.0.0.1:{port}", gcs_data)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
