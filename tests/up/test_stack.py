"""``Stack``, the service ``clickstream up`` runs, in-process: its layout, and a real stack (the
embedded broker and a collector in a child process) started, watched and stopped."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from clickstream.errors import ClickstreamError
from clickstream.lock import FolderInUseError, is_locked, up_lock_path
from clickstream.settings import Settings, load_settings
from clickstream.simulators.web import WebTrafficGenerator
from clickstream.stack import JOBS, Rates, Stack, layout
from clickstream.supervisor import read_state, state_path
from tests.conftest import alive, cli_env, read_topic, wait_for, wait_gone
from tests.up.support import up_env

pytestmark = pytest.mark.slow


def test_the_layout_runs_the_jobs_first_and_the_simulators_at_their_rates(tmp_path: Path) -> None:
    settings = load_settings(environ=up_env(tmp_path))
    plain = [spec.name for spec in layout(settings, demo=False)]
    assert plain == ["jobs", "collector", "dashboard", "bookstore"]
    plan = Stack.from_settings(settings, environ={}, rates=Rates(web=7, shop=3.5, users=0.5)).plan
    specs = {spec.name: spec for spec in plan}
    assert [spec.name for spec in plan][:4] == plain
    assert [spec.name for spec in plan if spec.before_kafka] == ["jobs"]
    assert specs["jobs"].args[: 2 + len(JOBS)] == ("jobs", "run", *JOBS)
    collector = f"http://127.0.0.1:{settings.collector.port}"
    assert specs["collector"].health_url == f"{collector}/healthz"
    assert specs["web-sim"].args == (
        "simulate", "web", "--endless", "--rate=7", f"--collector={collector}", "--time-scale=60",
    )  # fmt: skip
    assert specs["shop-sim"].args == ("simulate", "shop", "--endless", "--rate=3.5")
    assert specs["shop-sim"].url == f"3.5 events/s to topic {settings.topics.shop}"
    assert specs["users-sim"].args == ("simulate", "users", "--endless", "--rate=0.5")
    # The demo's visitors post from loopback with their own addresses: the collector believes
    # them, so they have countries; without the demo it trusts no header (the default).
    assert specs["collector"].env == (("CLICKSTREAM_COLLECTOR_TRUST_FORWARDED_FOR", "true"),)
    assert [spec.env for spec in layout(settings, demo=False) if spec.env] == []
    sims = [name for name in specs if name.endswith("-sim")]
    assert all(specs[name].args[2] == "--endless" for name in sims)
    assert len(sims) == 6
    # Some of the jobs only, in the order up starts them (the dashboard's first).
    (some,) = [spec for spec in layout(settings, jobs=("sessions", "shop")) if spec.name == "jobs"]
    assert some.args[:4] == ("jobs", "run", "shop", "sessions")
    assert some.url.startswith("Spark: shop, sessions -> ")
    with pytest.raises(ClickstreamError, match=r"up runs the jobs shop, .*: not shoop"):
        layout(settings, jobs=("shoop",))


def collector_stack(data_dir: Path, said: list[str], demo: bool = False) -> tuple[Settings, Stack]:
    """The embedded broker and the collector (as the demo runs it, with ``demo``), on free
    ports."""
    environ = up_env(data_dir)
    settings = load_settings(environ=environ)
    (spec,) = [spec for spec in layout(settings, demo=demo) if spec.name == "collector"]
    stack = Stack(settings, [spec], environ=environ, say=said.append, warn=said.append)
    return settings, stack


def test_run_starts_the_parts_watches_them_and_stops_them_all(tmp_path: Path) -> None:
    said: list[str] = []
    settings, stack = collector_stack(tmp_path, said, demo=True)
    stop = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            stack.run(stop)
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: failed or any("clickstream is up" in line for line in said), 120)
        assert not failed, failed
        assert said.index(f"broker     up   {stack.parts[0].url}") < said.index(
            f"collector  up   {stack.parts[1].url}"
        )
        port = settings.collector.port
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        # The part's own setting reached it: the demo's collector believes a visitor's address
        # sent from loopback (the web simulator's way), so the event has its country.
        visitor = WebTrafficGenerator(seed=5).batches()
        agent, events = next(visitor)
        posted = httpx.post(
            f"http://127.0.0.1:{port}/v1/events",
            json=events,
            headers={"user-agent": agent, "x-forwarded-for": "8.8.8.8"},
            timeout=10,
        )
        assert posted.status_code == 200, posted.text
        running = stack.settings  # with the embedded broker's address
        (stored,) = [e for _, e in read_topic(running, running.topics.web_events)]
        assert stored["country"] == "US"
        # The supervisor's state, for `clickstream status`, while the data folder is locked.
        state = wait_for(lambda: read_state(tmp_path), 10)
        assert [(p.name, p.state) for p in state.parts] == [
            ("broker", "running"),
            ("collector", "running"),
        ]
        pids = [p.pid for p in state.parts]
        assert all(pid is not None and alive(pid) for pid in pids)
        # A second stack on the same data folder is refused before it touches anything.
        with pytest.raises(FolderInUseError, match="stop it first"):
            collector_stack(tmp_path, [])[1].run(threading.Event())
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    assert not failed, failed
    assert said[-2:] == ["collector  stopped", "broker     stopped"]
    assert wait_gone({pid for pid in pids if pid is not None}) == set()
    assert not state_path(tmp_path).exists()
    assert not is_locked(up_lock_path(tmp_path))


def test_a_stop_before_kafka_answers_starts_no_part_and_leaves_nothing(tmp_path: Path) -> None:
    said: list[str] = []
    _, stack = collector_stack(tmp_path, said)
    stop = threading.Event()
    stop.set()  # as a Ctrl-C while the broker starts
    started = time.monotonic()
    stack.run(stop)
    assert time.monotonic() - started < 60
    assert not any(" up " in line for line in said), said
    assert said[-1] == "broker     stopped"
    assert stack.parts == []
    assert not is_locked(up_lock_path(tmp_path))


def test_reset_refuses_checkpoints_on_a_url(tmp_path: Path) -> None:
    environ = cli_env(
        CLICKSTREAM_DATA_DIR=str(tmp_path), CLICKSTREAM_SPARK_CHECKPOINT_DIR="s3a://bucket/cp"
    )
    stack = Stack(load_settings(environ=environ), reset=True, environ=environ, say=print)
    with pytest.raises(ClickstreamError, match="--reset deletes local checkpoints only"):
        stack.run(threading.Event())
    assert not is_locked(up_lock_path(tmp_path))
