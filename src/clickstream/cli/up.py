"""``clickstream up``: everything, in one process tree."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import click

from clickstream.cli.base import Context, cli, warn
from clickstream.settings import Settings
from clickstream.stack import ProcessPart, Stack

JOBS = ["shop", "web-live", "sessions"]  # dashboard jobs first: the first data point


@cli.command()
@click.option("--demo/--no-demo", default=True, help="Also run the traffic simulators.")
@click.option(
    "--rate", type=float, default=5.0, show_default=True, help="Demo web events per second."
)
@click.option(
    "--shop-rate",
    type=float,
    default=10.0,
    show_default=True,
    help="Demo shop events per second (the seed's pace).",
)
@click.option(
    "--reset",
    is_flag=True,
    help="Delete the jobs' checkpoints first: they read the topics again from the start.",
)
@click.pass_context
def up(click_ctx: click.Context, demo: bool, rate: float, shop_rate: float, reset: bool) -> None:
    """Start everything on embedded defaults; one Ctrl-C stops it all."""
    from clickstream.stack import Stack, stop_signals

    ctx: Context = click_ctx.obj
    with stop_signals() as stop:
        stack = Stack(ctx.settings, on_event=click.echo)
        try:
            settings = stack.launch_kafka(reset=reset)
            env = _child_env(
                settings, click_ctx.parent.params.get("config_file") if click_ctx.parent else None
            )
            logs = settings.data_dir.absolute() / "logs"
            jobs, *others = _parts(settings, env, logs, demo, rate, shop_rate)
            stack.add(jobs)  # Spark builds its session while the broker starts
            stack.await_kafka()
            for part in others:
                if stop.is_set():
                    return
                stack.add(part)
            dashboard = settings.dashboard
            click.echo(
                f"clickstream is up: open http://{dashboard.host}:{dashboard.port}/ "
                f"(logs in {logs}; `clickstream status` for details); press Ctrl-C to stop"
            )
            _watch(stack, stop, logs)
        finally:
            stack.stop()


def _watch(stack: Stack, stop: threading.Event, logs: Path) -> None:
    """Say when a part stops answering, and when it is back, until a signal."""
    reported: set[str] = set()
    while not stop.wait(5.0):  # a signal ends the wait at once
        down = set(stack.unhealthy())
        for name in sorted(down - reported):
            warn(f"{name} is not healthy (see {logs / (name + '.log')})")
        for name in sorted(reported - down):
            click.echo(f"{name} is healthy again")
        reported = down


def _parts(
    settings: Settings, env: dict[str, str], logs: Path, demo: bool, rate: float, shop_rate: float
) -> list[ProcessPart]:
    """The child processes of ``up``, in start order (the jobs first: see ``up``)."""
    url = f"http://{settings.collector.host}:{settings.collector.port}"
    board = f"http://{settings.dashboard.host}:{settings.dashboard.port}"
    parts = [
        ProcessPart(
            "jobs",
            ["jobs", "run", *JOBS, f"--wait-for-kafka={settings.broker.startup_timeout_s:g}"],
            env,
            logs / "jobs.log",
            url=f"Spark: {', '.join(JOBS)} -> {settings.duckdb_path} (clickstream sql)",
        ),
        ProcessPart(
            "collector",
            ["collector"],
            env,
            logs / "collector.log",
            url=f"{url} (tracker: {url}/clickstream.js, API: {url}/docs)",
            health_url=f"{url}/healthz",
        ),
        ProcessPart(
            "dashboard",
            ["dashboard"],
            env,
            logs / "dashboard.log",
            url=f"{board}/",
            health_url=f"{board}/healthz",
        ),
    ]
    if demo:
        # Simulated time runs 60x so sessions close (30 min idle + watermark) within a minute.
        simulate = ["simulate", "web", "--endless", f"--rate={rate}", f"--collector={url}"]
        simulate.append("--time-scale=60")
        parts.append(
            ProcessPart("web-sim", simulate, env, logs / "web-sim.log", url=f"{rate:g} events/s")
        )
        parts.append(
            ProcessPart(
                "shop-sim",
                ["simulate", "shop", "--endless", f"--rate={shop_rate}"],
                env,
                logs / "shop-sim.log",
                url=f"{shop_rate:g} events/s to topic {settings.topics.shop}",
            )
        )
    return parts


def _child_env(settings: Settings, config_file: Path | None) -> dict[str, str]:
    """The environment of ``up``'s children: ours, pointed at the running Kafka."""
    env = dict(os.environ)
    env["CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS"] = str(settings.kafka.bootstrap_servers)
    env["CLICKSTREAM_DATA_DIR"] = str(settings.data_dir.absolute())
    if config_file is not None:
        env["CLICKSTREAM_CONFIG"] = str(Path(config_file).absolute())
    return env
