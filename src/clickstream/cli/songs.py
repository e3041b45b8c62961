"""``clickstream simulate songs``."""

from __future__ import annotations

import click

from clickstream.cli.base import Context, pass_context, warn
from clickstream.cli.data import simulate
from clickstream.errors import ClickstreamError


@simulate.command("songs")
@click.option("--topic", help="Topic to send to. Default: songs.topic (tony-allen-plays).")
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Plays/s (0: flat out).",
)
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many plays.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), help="Stop after S s.")
@click.option("--endless", is_flag=True, help="Play until Ctrl-C.")
@click.option(
    "--artist",
    "artists",
    multiple=True,
    metavar="NAME",
    help="An artist to play, each with its own ten songs; repeat for several. "
    "Default: tony-allen (the seed's).",
)
@click.option("--all-artists", is_flag=True, help="Play every artist of the catalog.")
@click.option(
    "--times",
    type=click.Choice(["month", "now"]),
    default="month",
    show_default=True,
    help="Event times: random earlier this month (the seed's), or the time of sending.",
)
@click.option("--seed", type=int, help="Random seed, for reproducible plays.")
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False),
    help="Append one line per delivery report (as the seed's producer.log).",
)
@pass_context
def simulate_songs(
    ctx: Context,
    topic: str | None,
    rate: float,
    count: int | None,
    duration: float | None,
    endless: bool,
    artists: tuple[str, ...],
    all_artists: bool,
    times: str,
    seed: int | None,
    log_file: str | None,
) -> None:
    """Song plays to Kafka, as the seed's producer: song_completed events of one artist's ten
    songs (or several artists'), with delivery reports counted; the totals at the end."""
    from clickstream.signals import stop_signals
    from clickstream.simulators.songs import generate_plays, open_log, pick_artists, play_songs

    if not (count or duration or endless):
        raise click.UsageError("plays never end: give --count, --duration or --endless")
    try:
        names = pick_artists(artists, all_artists)
    except ClickstreamError as exc:
        raise click.BadParameter(str(exc), param_hint="--artist") from None
    settings = ctx.client_settings()
    name = topic or settings.songs.topic
    click.echo(f"playing {', '.join(names)} to {name}", err=True)
    out = open_log(log_file)
    try:
        with stop_signals() as stop:
            stats = play_songs(
                settings,
                generate_plays(names, times=times, seed=seed),  # type: ignore[arg-type]
                topic=name,
                rate=rate,
                count=count,
                duration_s=duration,
                stop=stop,
                log_file=out,
            )
    finally:
        if out is not None:
            out.close()
    click.echo(stats.summary())
    if stats.interrupted:
        warn("stopped early: what was sent is in the topic")
    if stats.failed:
        raise ClickstreamError(f"{stats.failed} plays were not delivered: {stats.first_error}")
