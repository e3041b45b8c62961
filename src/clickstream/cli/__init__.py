"""The ``clickstream`` command. It parses options and builds objects; the work is elsewhere."""

from clickstream.cli import (
    bookstore,
    dashboard,
    data,
    dead_letters,
    kafka,
    results,
    services,
    songs,
    status,
    up,
)
from clickstream.cli.base import cli, main

__all__ = [
    "bookstore",
    "cli",
    "dashboard",
    "data",
    "dead_letters",
    "kafka",
    "main",
    "results",
    "services",
    "songs",
    "status",
    "up",
]
