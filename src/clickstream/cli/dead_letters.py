"""``clickstream dead-letters``: what the jobs refused, and sending it back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from clickstream.cli.base import Context, cli, pass_context, warn

_SELECT = [
    click.option("--reason", help="Only dead letters whose reason contains this text."),
    click.option("--source", help="Only those from this source topic."),
    click.option(
        "--since",
        help="Only those dead-lettered since: a time (2026-12-06T10:00:00Z) or an age (2h).",
    ),
]


Command = TypeVar("Command", bound=Callable[..., Any])


def _selecting(command: Command) -> Command:
    for option in reversed(_SELECT):
        command = option(command)
    return command


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


@cli.group("dead-letters")
def dead_letters() -> None:
    """List and replay the dead-letter topic (topics.dead_letter)."""


@dead_letters.command("list")
@_selecting
@pass_context
def dead_letters_list(
    ctx: Context, reason: str | None, source: str | None, since: str | None
) -> None:
    """Dead letters grouped by reason and source topic, with counts, how many were replayed,
    and when the first and last came."""
    from rich.console import Console
    from rich.table import Table

    from clickstream.dead_letters import Selection, parse_since, scan
    from clickstream.errors import ConfigError

    try:
        since_ms = parse_since(since) if since else None
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    settings = ctx.client_settings()
    found = scan(settings, since_ms)
    selection = Selection(reason, source, since_ms)
    found.letters = [letter for letter in found.letters if selection(letter)]
    title = f"Dead letters in {settings.topics.dead_letter}"
    table = Table("reason", "source", "records", "replayed", "first", "last",
                  title=title, title_justify="left")  # fmt: skip
    for group in found.groups():
        replayed = str(group.replayed)
        if group.not_replayable:
            replayed += f" ({group.not_replayable} not replayable)"
        table.add_row(group.reason, group.source, str(group.count), replayed,
                      _when(group.first_ms), _when(group.last_ms))  # fmt: skip
    Console(width=160).print(table)
    click.echo(f"{len(found.letters)} dead letters")
    if found.unreadable:
        warn(f"{found.unreadable} records of the topic are not dead letters (skipped)")


@dead_letters.command("replay")
@_selecting
@click.option("--again", is_flag=True, help="Also send those a run before this one sent back.")
@click.option("--dry-run", is_flag=True, help="Say what would be sent, and send nothing.")
@pass_context
def dead_letters_replay(
    ctx: Context,
    reason: str | None,
    source: str | None,
    since: str | None,
    again: bool,
    dry_run: bool,
) -> None:
    """Send the selected dead letters back to their source topics unchanged (value, key, first
    timestamp), after a fix of settings or code. A record that fails again is dead-lettered
    again; it is not sent twice by one run, nor again by a later run unless --again."""
    from clickstream.dead_letters import Selection, parse_since, replay
    from clickstream.errors import ConfigError

    try:
        since_ms = parse_since(since) if since else None
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    settings = ctx.client_settings()
    stats = replay(
        settings,
        Selection(reason, source, since_ms),
        again=again,
        dry_run=dry_run,
        on_progress=lambda done: click.echo(f"sent {done}...", err=True),
    )
    verb = "would send" if dry_run else "sent"
    where = ", ".join(f"{n} to {topic}" for topic, n in sorted(stats.sent.items())) or "nothing"
    click.echo(f"{verb} {stats.total} of {stats.selected} selected dead letters back: {where}")
    if stats.already:
        click.echo(f"{stats.already} were sent back by an earlier run (--again sends them)")
    if stats.not_replayable:
        warn(
            f"{stats.not_replayable} cannot be replayed (results too large for Kafka, or "
            "records cut to their first 64 KiB)"
        )
