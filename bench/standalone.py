"""Shared by the benchmarks: a Spark standalone cluster (master + workers) from PySpark's own
launcher, on 127.0.0.1 and free ports, each worker in its own folder under ``root``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import free_port


def _alive_workers(ui: str) -> int:
    try:
        with urllib.request.urlopen(f"{ui}/json/", timeout=2) as response:
            return int(json.load(response).get("aliveworkers", 0))
    except OSError:
        return 0


@contextmanager
def standalone(
    root: Path, workers: int, cores: int = 1, memory: str = "1g", java_home: str | None = None
) -> Iterator[str]:
    """Start a master and ``workers`` workers; yield the master's ``spark://`` URL."""
    spark_class = str(Path(sys.executable).parent / "spark-class")
    env = dict(os.environ)
    env.update(
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_LOG_DIR=str(root / "logs"),
        SPARK_DAEMON_MEMORY="256m",
        PYSPARK_PYTHON=sys.executable,
    )
    if java_home:
        env["JAVA_HOME"] = java_home
    port, ui_port = free_port(), free_port()
    url, ui = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}"
    procs = []

    def launch(name: str, args: list[str]) -> None:
        log = (root / f"{name}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [spark_class, *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    root.mkdir(parents=True, exist_ok=True)
    try:
        launch(
            "master",
            [
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--webui-port",
                str(ui_port),
            ],
        )
        for i in range(workers):
            work = root / f"worker{i}"
            work.mkdir(exist_ok=True)
            launch(
                f"worker{i}",
                [
                    "org.apache.spark.deploy.worker.Worker",
                    url,
                    "--host",
                    "127.0.0.1",
                    "--webui-port",
                    str(free_port()),
                    "--cores",
                    str(cores),
                    "--memory",
                    memory,
                    "--work-dir",
                    str(work),
                ],
            )
        deadline = time.monotonic() + 120
        while _alive_workers(ui) < workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"the standalone cluster did not start: see {root}/*.log")
            time.sleep(0.5)
        yield url
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
