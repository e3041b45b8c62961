"""The ``clickstream`` command. It parses options and builds objects; the work is elsewhere."""

from clickstream.cli import data, kafka, services, up
from clickstream.cli.base import cli, main

__all__ = ["cli", "data", "kafka", "main", "services", "up"]
