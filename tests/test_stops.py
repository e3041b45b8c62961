"""A stop is heard at every stage of a start: `clickstream broker`, `jobs run` and `up`, sent
SIGTERM or SIGINT while they fetch jars (an empty jar cache), while the broker starts, while
Spark starts, end within 5 s with no process left; a SIGKILL during a download by Ivy leaves no
Ivy JVM. Each stage is seen in the process tree (or the process's threads), never waited for
with a fixed sleep."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clickstream.broker.embedded import EmbeddedBroker
from clickstream.broker.node import KAFKA_JARS, java_executable
from clickstream.children import descendants, ended_on_failure
from clickstream.maven import JarsUnavailableError, resolve
from tests.conftest import alive, broker_settings, child_pids, cli_env, wait_for
from tests.maven_repository import Repository, cache_jars, repository
from tests.up.support import up_env

pytestmark = pytest.mark.slow

STOP_WITHIN_S = 5.0

COMMANDS = {
    "broker": ["broker", "--port", "0"],
    "jobs": ["jobs", "run", "shop", "--wait-for-kafka=120"],
    "up": ["up", "--no-demo"],
}


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def closed_port() -> int:
    """A loopback port nothing listens on (a Kafka that never answers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Command:
    """``clickstream ARGS`` with its output collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "clickstream", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def descendants(self, having: str) -> list[int]:
        return [pid for pid in child_pids(self.process.pid) if having in cmdline(pid)]

    def wait_stage(self, reached: Callable[[], object], timeout: float = 180) -> None:
        def check() -> object:
            assert self.process.poll() is None, f"ended before the stage:\n{self.output}"
            return reached()

        wait_for(check, timeout=timeout, interval=0.05)

    def stop_now(self, sig: signal.Signals) -> None:
        """Send ``sig``: the command must end within 5 s, and nothing it started may be left."""
        before = child_pids(self.process.pid)
        sent = time.monotonic()
        self.process.send_signal(sig)
        try:
            code = self.process.wait(STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"still running {STOP_WITHIN_S:g} s after {sig.name}:\n{self.output}")
        took = time.monotonic() - sent
        self._reader.join(5)
        left = {pid: cmdline(pid) for pid in before | child_pids(self.process.pid) if alive(pid)}
        assert left == {}, f"left running after {sig.name}: {left}"
        assert code == 0, self.output
        assert "stopped while starting" in self.output, self.output
        assert took < STOP_WITHIN_S


@pytest.fixture(scope="module")
def slow_repository() -> Iterator[Repository]:
    """The jars from a repository on loopback at 200 kB/s a file: a fetch lasts long enough."""
    cache_jars()
    with repository(bytes_per_s=200_000) as repo:
        yield repo


def in_jar_download(command: Command, repo: Repository) -> None:
    before = repo.requests
    command.wait_stage(lambda: "(once)" in command.output and repo.requests > before)


def in_broker_start(command: Command) -> None:
    command.wait_stage(lambda: command.descendants("kafka.Kafka"))
    assert "broker listening" not in command.output
    assert "broker     up" not in command.output


def in_spark_start(command: Command) -> None:
    command.wait_stage(lambda: command.descendants("org.apache.spark.deploy.SparkSubmit"))
    assert "starting jobs" not in command.output
    assert "clickstream is up" not in command.output


def in_kafka_wait(command: Command) -> None:
    """Spark is up and the jobs wait for Kafka: librdkafka's threads run in the process."""

    def waiting() -> bool:
        tasks = Path(f"/proc/{command.process.pid}/task")
        names = []
        for task in tasks.iterdir():
            with contextlib.suppress(OSError):
                names.append((task / "comm").read_text())
        return any(name.startswith("rdk:") for name in names)

    command.wait_stage(waiting)
    assert "starting jobs" not in command.output


STAGES: dict[str, Callable[[Command], None]] = {
    "broker-start": in_broker_start,
    "spark-start": in_spark_start,
    "kafka-wait": in_kafka_wait,
}

CASES = [
    ("broker", "jars"),
    ("broker", "broker-start"),
    ("jobs", "jars"),
    ("jobs", "spark-start"),
    ("jobs", "kafka-wait"),
    ("up", "jars"),
    ("up", "broker-start"),
    ("up", "spark-start"),
]


def command_env(name: str, stage: str, tmp_path: Path, repo: Repository) -> dict[str, str]:
    env = up_env(tmp_path) if name == "up" else cli_env(CLICKSTREAM_DATA_DIR=str(tmp_path))
    env["CLICKSTREAM_BROKER_PORT"] = env["CLICKSTREAM_BROKER_CONTROLLER_PORT"] = "0"
    if name == "jobs":
        env["CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{closed_port()}"
    if stage == "jars":  # an empty jar cache, and a slow repository
        env["CLICKSTREAM_JARS_DIR"] = str(tmp_path / "empty-jars")
        env["CLICKSTREAM_JARS_REPOSITORY"] = repo.url
    return env


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize(("name", "stage"), CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_a_stop_at_each_stage_ends_the_command_within_5_s(
    name: str, stage: str, sig: signal.Signals, tmp_path: Path, slow_repository: Repository
) -> None:
    command = Command(COMMANDS[name], command_env(name, stage, tmp_path, slow_repository))
    if stage == "jars":
        in_jar_download(command, slow_repository)
    else:
        STAGES[stage](command)
    command.stop_now(sig)


IVY_RESOLVES = """
import sys
from pathlib import Path
from dataclasses import replace
from clickstream.broker.node import KAFKA_JARS
from clickstream.maven import resolve
unlocked = replace(KAFKA_JARS, lock=Path(sys.argv[1]) / "no-lock.txt")
resolve(unlocked, Path(sys.argv[1]), java=Path("java"), progress=print)
"""


def test_a_killed_parent_leaves_no_ivy_jvm(tmp_path: Path) -> None:
    """A set without a lock file is resolved by Ivy in a JVM child: it dies with its parent."""
    process = subprocess.Popen([sys.executable, "-c", IVY_RESOLVES, str(tmp_path)], env=cli_env())
    try:
        ivy = wait_for(
            lambda: [pid for pid in child_pids(process.pid) if "ivy-" in cmdline(pid)], timeout=60
        )
    finally:
        process.kill()
        process.wait(5)
    wait_for(lambda: not any(alive(pid) for pid in ivy), timeout=5)


def test_a_taken_controller_port_is_replaced_by_a_free_one(tmp_path: Path) -> None:
    """Two brokers with their own ports while the default controller port is taken."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            taken.bind(("127.0.0.1", 9093))
        except OSError:
            pass  # someone else holds it: taken all the same
        else:
            taken.listen()
        nodes = []
        for n in (1, 2):
            settings = broker_settings(
                tmp_path / f"data-{n}", CLICKSTREAM_BROKER_CONTROLLER_PORT="9093"
            )
            nodes.append(EmbeddedBroker(settings, log_file=tmp_path / f"broker-{n}.log"))
        try:
            for node in nodes:
                node.start()
            controllers = {node.node.controller_port for node in nodes}
            assert 9093 not in controllers
            assert len(controllers) == 2
            assert all(node.running() for node in nodes)
        finally:
            for node in nodes:
                node.stop()


def test_a_fetch_clears_what_a_killed_fetch_left(tmp_path: Path) -> None:
    """A SIGKILLed fetch leaves its scratch folder in the jar cache; the next one deletes it."""
    stale = tmp_path / f".{KAFKA_JARS.folder}-killed"
    (stale / "jars").mkdir(parents=True)
    (stale / "jars" / "half.jar").write_bytes(b"PK")
    settings = broker_settings(tmp_path, CLICKSTREAM_JARS_DIR=str(tmp_path))
    with pytest.raises(JarsUnavailableError):
        resolve(
            KAFKA_JARS,
            tmp_path,
            java=java_executable(settings),
            repository=f"http://127.0.0.1:{closed_port()}/maven2/",
        )
    assert not stale.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{KAFKA_JARS.folder}-")] == []


def test_an_interrupted_call_leaves_nothing_it_started() -> None:
    """``ended_on_failure`` kills what a call started and gave us no handle to, children of
    children included, and nothing that ran before."""
    before = subprocess.Popen(["sleep", "60"])
    started: list[subprocess.Popen[bytes]] = []

    def interrupted_call() -> None:
        with ended_on_failure():
            started.append(subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"]))
            wait_for(lambda: len(descendants(started[0].pid)) == 2)
            raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            interrupted_call()
        assert not alive(started[0].pid)
        assert descendants(started[0].pid) == set()
        assert alive(before.pid)
        assert started[0].wait(5) == -9  # killed, reaped here
    finally:
        before.kill()
        before.wait()
