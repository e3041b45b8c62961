"""Shared by the benchmarks: the sides of a comparison made in one run.

``--compare LABEL=DIR`` adds a side: DIR is another checkout (``git worktree add /tmp/old
<commit>``) or its ``src/``. A side runs with DIR's own virtualenv (``DIR/.venv/bin/python``)
when there is one, so an older version runs with the dependencies it pinned, else with this
interpreter and ``PYTHONPATH=DIR/src``. Each side gets the embedded broker its own code starts
(``python -m clickstream broker``): an older version's broker is part of what is compared;
this checkout uses the broker of ``CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS`` when it is set.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import CHECKOUT, JARS_DIR, shared_bootstrap

RESULT_PREFIX = "RESULT "


@dataclass(frozen=True)
class Side:
    label: str
    python: str
    src: Path

    @property
    def kafka_broker(self) -> bool:
        """True when this side's embedded broker is Apache Kafka (with a data folder, jars)."""
        return (self.src / "clickstream" / "broker" / "node.py").is_file()

    def env(self, **extra: str) -> dict[str, str]:
        """Our environment without CLICKSTREAM_ settings, running this side's code."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKSTREAM_")}
        env["PYTHONPATH"] = str(self.src)
        if self.kafka_broker:
            env["CLICKSTREAM_JARS_DIR"] = str(JARS_DIR)
        env.update(extra)
        return env


def this_side(label: str = "this") -> Side:
    return Side(label, sys.executable, CHECKOUT / "src")


def add_compare_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="also measure this checkout (or its src/) in the same run",
    )


def sides(parser: argparse.ArgumentParser, specs: list[str], label: str = "this") -> list[Side]:
    """This checkout first, then one side per ``--compare``."""
    found = [this_side(label)]
    for spec in specs:
        name, _, folder = spec.partition("=")
        root = Path(folder).resolve()
        src = root if (root / "clickstream").is_dir() else root / "src"
        if not name or not (src / "clickstream").is_dir():
            parser.error(f"--compare wants LABEL=DIR with a clickstream checkout, not {spec!r}")
        venv = (src.parent / ".venv" / "bin" / "python") if src.name == "src" else None
        python = str(venv) if venv is not None and venv.exists() else sys.executable
        found.append(Side(name, python, src))
    return found


@contextmanager
def side_broker(side: Side, data_dir: Path | None = None) -> Iterator[str]:
    """The side's own embedded broker on a free port; yields its bootstrap address. This
    checkout takes the broker of the environment instead, when one is set (``shared_bootstrap``)."""
    shared = shared_bootstrap()
    if shared and side.label == "this" and side.src == CHECKOUT / "src" and data_dir is None:
        yield shared
        return
    with tempfile.TemporaryDirectory(prefix="bench-broker-") as scratch:
        folder = data_dir or Path(scratch)
        extra = {"CLICKSTREAM_DATA_DIR": str(folder)}
        if side.kafka_broker:
            extra["CLICKSTREAM_BROKER_CONTROLLER_PORT"] = "0"
        process = subprocess.Popen(
            [side.python, "-m", "clickstream", "broker", "--port", "0"],
            env=side.env(**extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        if "broker listening on" not in line:
            process.kill()
            raise RuntimeError(f"{side.label}: the broker did not start: {line}")
        try:
            yield line.split()[3]
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def broker_pids(bootstrap: str) -> list[int]:
    """PIDs of the processes listening on ``bootstrap``'s port (to sample their CPU)."""
    port = int(bootstrap.rsplit(":", 1)[1])
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in lines:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(fields[9])
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            pids.append(int(proc.name))
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def run_child(side: Side, script: Path, args: list[str], env: Mapping[str, str]) -> Any:
    """Run ``script ARGS`` as ``side`` and return the JSON it printed after ``RESULT``."""
    result = subprocess.run(
        [side.python, str(script), *args],
        env=dict(env),
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    for line in reversed(result.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise RuntimeError(f"{side.label}: {script.name} printed no result (exit {result.returncode})")


def print_result(value: Any) -> None:
    print(RESULT_PREFIX + json.dumps(value), flush=True)


def child_args(argv: list[str], bootstrap: str, drop: tuple[str, ...] = ()) -> list[str]:
    """A side's command line: ours without ``--compare``, ``--markdown`` and the options in
    ``drop`` (each with its value), plus ``--bootstrap``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=")[0]
        if name == "--markdown":
            continue
        if name in ("--compare", *drop):
            skip = "=" not in arg
            continue
        out.append(arg)
    return [*out, "--bootstrap", bootstrap]
