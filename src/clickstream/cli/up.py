"""``clickstream up``: everything, in one process tree."""

from __future__ import annotations

import os

import click

from clickstream.cli.base import Context, cli, warn


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
    "--jobs",
    "job_names",
    metavar="NAME,...",
    help="Run only these Spark jobs (default: all of them; `clickstream jobs list` names them).",
)
@click.option(
    "--reset",
    is_flag=True,
    help="Delete the jobs' checkpoints first: they read the topics again from the start. "
    "Nothing else ever deletes them.",
)
@click.pass_obj
def up(
    ctx: Context, demo: bool, rate: float, shop_rate: float, job_names: str | None, reset: bool
) -> None:
    """Start everything on embedded defaults; one Ctrl-C stops it all. A part that exits is
    started again (after 1 s, then 2 s, 4 s... at most 60 s); after 5 failures within 10
    minutes it is left stopped, with its last error in `clickstream status`."""
    from clickstream.signals import stop_signals
    from clickstream.stack import JOBS, Rates, Stack

    jobs = [name.strip() for name in job_names.split(",")] if job_names is not None else JOBS
    stack = Stack.from_settings(
        ctx.settings,
        demo=demo,
        rates=Rates(web=rate, shop=shop_rate),
        jobs=jobs,
        reset=reset,
        config_file=ctx.config_file,
        environ=os.environ,
        say=click.echo,
        warn=warn,
    )
    with stop_signals() as stop:
        stack.run(stop)
