"""``clickstream collector`` and ``clickstream jobs``."""

from __future__ import annotations

import sys
from typing import Literal

import click

from clickstream.cli.base import Context, cli, pass_context


@cli.command()
@click.option("--host", help="Default: collector.host.")
@click.option("--port", type=int, help="Default: collector.port.")
@click.option("--workers", type=click.IntRange(min=1), help="Default: collector.workers.")
@click.option(
    "--server",
    type=click.Choice(["uvicorn", "granian"]),
    help="ASGI server. Default: collector.server.",
)
@pass_context
def collector(
    ctx: Context,
    host: str | None,
    port: int | None,
    workers: int | None,
    server: Literal["uvicorn", "granian"] | None,
) -> None:
    """Run the HTTP collector (events in, Kafka out)."""
    from clickstream.collector.server import serve

    settings = ctx.client_settings()
    section = settings.collector
    workers = workers or section.workers
    server = server or section.server
    bind_host = host or section.host
    bind_port = port if port is not None else section.port
    plural = "s" if workers > 1 else ""
    click.echo(
        f"collector on http://{bind_host}:{bind_port} -> {settings.kafka.bootstrap_servers} "
        f"({server}, {workers} worker{plural})"
    )
    serve(settings, bind_host, bind_port, workers=workers, server=server)


@cli.group()
def jobs() -> None:
    """Streaming jobs (Spark)."""


@jobs.command("list")
def jobs_list() -> None:
    """The jobs there are."""
    from clickstream.jobs import builders

    for name, build in sorted(builders().items()):
        doc = (sys.modules[build.__module__].__doc__ or "").strip().splitlines()[0]
        click.echo(f"{name:<12} {doc}")


@jobs.command("run")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option("--available-now", is_flag=True, help="Process what is in Kafka now, then stop.")
@click.option("--master", help="Spark master URL. Default: spark.master.")
@click.option(
    "--wait-for-kafka",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds to wait for Kafka to answer once Spark is up. Default: kafka.timeout_s.",
)
@pass_context
def jobs_run(
    ctx: Context,
    names: tuple[str, ...],
    available_now: bool,
    master: str | None,
    wait_for_kafka: float | None,
) -> None:
    """Run the jobs NAME... in one Spark session until Ctrl-C (or until caught up, with
    --available-now). `clickstream jobs run sessions shop web-live` runs them all. One jobs
    process at a time may use a checkpoint folder."""
    from clickstream.jobs import pick
    from clickstream.spark.session import check_master
    from clickstream.streaming.runner import lock_checkpoints, run_jobs

    builds = pick(names)  # before Spark starts
    check_master(master or ctx.settings.spark.master)
    lock_checkpoints(ctx.settings)
    run_jobs(
        ctx.client_settings(),
        builds,
        available_now=available_now,
        master=master,
        wait_for_kafka=wait_for_kafka,
        say=click.echo,
        locked=True,
    )
