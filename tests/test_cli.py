"""The `clickstream` command as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clickstream.broker.embedded import EmbeddedBroker
from tests.conftest import cli_env


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clickstream", *args],
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_lists_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("broker", "topics", "up", "config"):
        assert f"  {command} " in result.stdout


def test_topics_create_and_list(broker: EmbeddedBroker, new_topic: Callable[..., str]) -> None:
    name = new_topic(create=False)
    env = {"CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap}
    created = run("topics", "create", name, "--partitions", "3", **env)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == f"{name}: created"
    again = run("topics", "create", name, **env)
    assert again.stdout.strip() == f"{name}: exists"
    listed = run("topics", "list", **env)
    assert listed.returncode == 0
    (row,) = [line for line in listed.stdout.splitlines() if name in line]
    assert row.split("│")[2].strip() == "3"


def test_topics_without_a_cluster_is_one_line() -> None:
    result = run(
        "topics", "list",
        CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
        CLICKSTREAM_KAFKA_TIMEOUT_S="1",
    )  # fmt: skip
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "127.0.0.1:1" in result.stderr


def test_sql_queries_the_warehouse(tmp_path: Path) -> None:
    import pyarrow as pa

    from clickstream.sinks.duckdb_table import DuckDBTable

    table = DuckDBTable(tmp_path / "warehouse.duckdb", "sessions", key="session_key")
    rows = pa.table({"session_key": ["a", "b"], "pageviews": [3, 1]})
    assert table.write(rows, 0) == 2
    assert table.write(pa.table({"session_key": ["b"], "pageviews": [2]}), 1) == 1  # replaces b
    env = {"CLICKSTREAM_DATA_DIR": str(tmp_path)}
    result = run("sql", "select * from sessions order by session_key", "--format", "csv", **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["session_key,pageviews", "a,3", "b,2"]
    bad = run("sql", "select nope from sessions", **env)
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: query failed:")
    empty = run("sql", "select 1", CLICKSTREAM_DATA_DIR=str(tmp_path / "none"))
    assert "no warehouse at" in empty.stderr


def test_jobs_list_names_every_job() -> None:
    result = run("jobs", "list")
    assert result.returncode == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == [
        "bookstore",
        "joins",
        "sessions",
        "shop",
        "songs",
        "web-live",
    ]


def test_jobs_run_refuses_an_unknown_job_before_starting_spark() -> None:
    result = run("jobs", "run", "sessions", "shopp")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: unknown job 'shopp'; jobs: bookstore, joins, sessions, shop, songs, web-live"
    )


def test_jobs_run_refuses_a_master_spark_would_refuse_before_starting_spark() -> None:
    for args, env in (
        (("--master", "spork://x:7077"), {}),
        ((), {"CLICKSTREAM_SPARK_MASTER": "yran"}),
    ):
        result = run("jobs", "run", "shop", *args, **env)
        assert result.returncode == 1
        wrong = args[1] if args else "yran"
        assert result.stderr.startswith(
            f"error: spark.master = '{wrong}': Master must either be yarn or start with spark, "
            "k8s, or local"
        ), result.stderr
        assert "java" not in result.stderr.lower()


def test_simulate_web_through_a_real_collector(start_collector: Callable[..., Any]) -> None:
    from tests.conftest import read_topic

    collector = start_collector()
    settings = collector.settings
    result = run(
        "simulate", "web", "--collector", collector.url, "--count", "60", "--rate", "0",
        "--seed", "3",
        CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=str(settings.kafka.bootstrap_servers),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "sent 60 events" in result.stdout
    assert "60 accepted, 0 rejected, 0 failed" in result.stdout
    topics = settings.topics
    stored = sum(
        len(read_topic(settings, topic))
        for topic in (topics.web_events, topics.web_pings, topics.web_custom)
    )
    assert stored == 60


HOLD = (
    "import sys; from pathlib import Path; from clickstream.lock import FolderLock; "
    "FolderLock(Path(sys.argv[1]), sys.argv[2]).acquire(); print('held', flush=True); "
    "sys.stdin.read()"
)


def hold_lock(path: Path, what: str) -> subprocess.Popen[str]:
    """Another process that holds the lock at ``path`` until killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), what],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def a_checkpoint(data_dir: Path) -> Path:
    commit = data_dir / "checkpoints" / "shop" / "counts" / "commits" / "0"
    commit.parent.mkdir(parents=True)
    commit.write_text("v1\n")
    return commit


def test_up_refuses_a_data_folder_another_up_holds_and_deletes_nothing(tmp_path: Path) -> None:
    from clickstream.lock import is_locked, up_lock

    commit = a_checkpoint(tmp_path)
    holder = hold_lock(tmp_path / "up.lock", "clickstream up")
    try:
        result = run("up", "--reset", "--no-demo", CLICKSTREAM_DATA_DIR=str(tmp_path))
        assert result.returncode == 1
        assert result.stderr.strip() == (
            f"error: clickstream up is already running on {tmp_path} (pid {holder.pid}): "
            "stop it first"
        )
        assert result.stdout == ""  # nothing started
        assert commit.read_text() == "v1\n"  # --reset deleted nothing
    finally:
        holder.kill()
        holder.wait()
    # A holder that died (SIGKILL) leaves no stale lock.
    assert not is_locked(tmp_path / "up.lock")
    up_lock(tmp_path).acquire().release()


def test_jobs_run_and_up_reset_refuse_checkpoints_a_jobs_process_uses(tmp_path: Path) -> None:
    commit = a_checkpoint(tmp_path)
    holder = hold_lock(tmp_path / "checkpoints.lock", "clickstream jobs run")
    checkpoints = tmp_path / "checkpoints"
    try:
        result = run("jobs", "run", "shop", CLICKSTREAM_DATA_DIR=str(tmp_path))
        assert result.returncode == 1
        assert result.stderr.strip() == (
            f"error: clickstream jobs run is already running on {checkpoints} "
            f"(pid {holder.pid}): stop it first"
        )
        reset = run(
            "up", "--reset", "--no-demo",
            CLICKSTREAM_DATA_DIR=str(tmp_path), CLICKSTREAM_BROKER_PORT="0",
            CLICKSTREAM_BROKER_CONTROLLER_PORT="0",
        )  # fmt: skip
        assert reset.returncode == 1
        assert reset.stderr.strip().splitlines()[-1] == (
            f"error: clickstream jobs run is already running on {checkpoints} "
            f"(pid {holder.pid}): stop it first"
        )
        assert commit.read_text() == "v1\n"
    finally:
        holder.kill()
        holder.wait()
