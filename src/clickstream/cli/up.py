"""``clickstream up``: everything, in one process tree."""

from __future__ import annotations

import os
from pathlib import Path

import click

from clickstream.cli.base import Context, cli, warn
from clickstream.settings import Settings
from clickstream.stack import ProcessPart

# Dashboard jobs first: the first data point.
JOBS = ["shop", "web-live", "bookstore", "songs", "joins", "sessions"]


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
    help="Delete the jobs' checkpoints first: they read the topics again from the start. "
    "Nothing else ever deletes them.",
)
@click.pass_context
def up(click_ctx: click.Context, demo: bool, rate: float, shop_rate: float, reset: bool) -> None:
    """Start everything on embedded defaults; one Ctrl-C stops it all. A part that exits is
    started again (after 1 s, then 2 s, 4 s... at most 60 s); after 5 failures within 10
    minutes it is left stopped, with its last error in `clickstream status`."""
    from clickstream.lock import up_lock
    from clickstream.signals import Stopped, stop_signals
    from clickstream.stack import Stack
    from clickstream.supervisor import Supervisor, state_path

    ctx: Context = click_ctx.obj
    # Before anything else (--reset included): one `up` per data folder.
    lock = up_lock(ctx.settings.data_dir).acquire()
    state_file = state_path(ctx.settings.data_dir)
    with stop_signals() as stop:
        stack = Stack(ctx.settings, on_event=click.echo)
        try:
            with stop.raising():  # a stop while a part starts raises Stopped where `up` waits
                settings = stack.launch_kafka(reset=reset)
                env = _child_env(
                    settings,
                    click_ctx.parent.params.get("config_file") if click_ctx.parent else None,
                )
                logs = settings.data_dir.absolute() / "logs"
                jobs, *others = _parts(settings, env, logs, demo, rate, shop_rate)
                for part in (jobs, *others):  # the lock lasts until the last part has exited
                    part.keep_fds = (lock.fd,) if lock.fd is not None else ()
                stack.add(jobs)  # Spark builds its session while the broker starts
                stack.await_kafka()
                for part in others:
                    stack.add(part)
            dashboard = settings.dashboard
            click.echo(
                f"clickstream is up: open http://{dashboard.host}:{dashboard.port}/ "
                f"(logs in {logs}; `clickstream status` for details); press Ctrl-C to stop"
            )
            Supervisor(stack.parts, say=click.echo, warn=warn, state_file=state_file).run(stop)
        except Stopped:
            click.echo("stopped while starting")
        finally:
            stack.stop()
            state_file.unlink(missing_ok=True)
            lock.release()


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
        ProcessPart(
            "bookstore",
            ["bookstore"],
            env,
            logs / "bookstore.log",
            url=f"http://{settings.bookstore.host}:{settings.bookstore.port}/",
            health_url=f"http://{settings.bookstore.host}:{settings.bookstore.port}/healthz",
        ),
    ]
    if demo:
        joins = settings.joins
        # (name, simulate's arguments, what it sends): each runs endless, logged to <name>.log.
        simulators = [
            # Simulated time runs 60x so sessions close (30 min idle + watermark) within a minute.
            (
                "web-sim",
                ["web", f"--rate={rate}", f"--collector={url}", "--time-scale=60"],
                f"{rate:g} events/s",
            ),
            (
                "shop-sim",
                ["shop", f"--rate={shop_rate}"],
                f"{shop_rate:g} events/s to topic {settings.topics.shop}",
            ),
            (
                "bookstore-sim",
                ["bookstore", "--rate=5"],
                f"5 events/s to topic {settings.topics.bookstore}",
            ),
            # Several artists, stamped now: the minute and hour rankings move live.
            (
                "songs-sim",
                ["songs", "--rate=5", "--all-artists", "--times=now"],
                f"5 plays/s to topic {settings.songs.topic}",
            ),
            ("users-sim", ["users", "--rate=2"], f"2 users/s to topic {joins.users_topic}"),
            (
                "page-events-sim",
                ["page-events"],
                f"1-10 events per user to topic {joins.events_topic}",
            ),
        ]
        for name, args, sends in simulators:
            command = ["simulate", args[0], "--endless", *args[1:]]
            parts.append(ProcessPart(name, command, env, logs / f"{name}.log", url=sends))
    return parts


def _child_env(settings: Settings, config_file: Path | None) -> dict[str, str]:
    """The environment of ``up``'s children: ours, pointed at the running Kafka."""
    env = dict(os.environ)
    env["CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS"] = str(settings.kafka.bootstrap_servers)
    env["CLICKSTREAM_DATA_DIR"] = str(settings.data_dir.absolute())
    if config_file is not None:
        env["CLICKSTREAM_CONFIG"] = str(Path(config_file).absolute())
    return env
