"""A real Spark standalone cluster: one master and two workers (a core each) started from
PySpark's own launcher (``spark-class``), on 127.0.0.1 and free ports, each worker in its own
folder: a job's tasks run in two executor processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clickstream.broker.embedded import free_port
from clickstream.spark.java import find_java_home
from tests.conftest import wait_for

BIN = Path(sys.executable).parent
WORKERS = 2


@dataclass
class Cluster:
    url: str
    """``spark://127.0.0.1:<port>``."""
    ui: str
    env: dict[str, str]
    """The environment a driver (``clickstream jobs run``, ``spark-submit``) needs."""


def spark_env(logs: Path) -> dict[str, str]:
    java_home = find_java_home(None, os.environ)
    assert java_home is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKSTREAM_", "SPARK_"))}
    env.update(
        JAVA_HOME=str(java_home),
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_LOG_DIR=str(logs),
        SPARK_DAEMON_MEMORY="256m",
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
    )
    return env


def launch(cls: str, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen(
        [str(BIN / "spark-class"), cls, *args],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def alive_workers(ui: str) -> int:
    try:
        with urllib.request.urlopen(f"{ui}/json/", timeout=2) as response:
            return int(json.load(response).get("aliveworkers", 0))
    except OSError:
        return 0


def bound_port(log: Path, service: str, process: subprocess.Popen[bytes]) -> int:
    """The port ``service`` of a Spark daemon bound, from its log: Spark takes the next port
    up when the one asked for is taken (another test process may have just taken it)."""
    pattern = re.compile(rf"Successfully started service '{service}' on port (\d+)")

    def bound() -> int | None:
        if process.poll() is not None:
            pytest.fail(f"the Spark daemon exited: {log.read_text()[-2000:]}")
        found = pattern.search(log.read_text(errors="replace")) if log.exists() else None
        return int(found.group(1)) if found else None

    return wait_for(bound, timeout=120, interval=0.2)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("spark-cluster")
    env = spark_env(root / "logs")
    master = launch(
        "org.apache.spark.deploy.master.Master",
        ["--host", "127.0.0.1", "--port", str(free_port()), "--webui-port", str(free_port())],
        env,
        root / "master.log",
    )
    port = bound_port(root / "master.log", "sparkMaster", master)
    ui_port = bound_port(root / "master.log", "MasterUI", master)
    url, ui = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}"
    workers = []
    for n in range(WORKERS):
        work = root / f"worker-{n}"
        work.mkdir()
        workers.append(
            launch(
                "org.apache.spark.deploy.worker.Worker",
                [url, "--host", "127.0.0.1", "--webui-port", str(free_port()), "--cores", "1",
                 "--memory", "1g", "--work-dir", str(work)],
                env,
                root / f"worker-{n}.log",
            )
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while alive_workers(ui) < WORKERS:
            named = [("master", master), *((f"worker-{n}", w) for n, w in enumerate(workers))]
            for name, proc in named:
                if proc.poll() is not None:
                    log = (root / f"{name}.log").read_text()[-2000:]
                    pytest.fail(f"the Spark {name} exited: {log}")
            if time.monotonic() > deadline:
                pytest.fail(f"{WORKERS} workers did not register with {url} in 120 s")
            time.sleep(0.5)
        yield Cluster(url, ui, env)
    finally:
        for proc in (*workers, master):
            proc.terminate()
        for proc in (*workers, master):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
