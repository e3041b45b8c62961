"""Schemathesis against a running collector (real broker): generated requests from the OpenAPI
document, and its negative and method checks, find no 5xx and no answer that disagrees with the
document. A short run (45 s at most) with a fixed seed; ``scripts/fuzz_collector.py`` runs a
longer one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.collector.conftest import RunningCollector

pytestmark = pytest.mark.slow

SEED = 20261129


def test_collector_agrees_with_its_openapi_document(
    start_collector: Callable[..., RunningCollector], tmp_path: Path
) -> None:
    collector = start_collector()
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{collector.url}/openapi.json",
        "--url",
        collector.url,
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "50",
        "--max-time",
        "45",
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    run = subprocess.run(  # in tmp_path: Schemathesis keeps a cache in its working folder
        command, capture_output=True, text=True, timeout=150, check=False, cwd=tmp_path
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout, run.stdout[-3000:]
