"""What a job module builds: named streaming queries, each a DataFrame and a batch writer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


@dataclass
class QuerySpec:
    name: str
    frame: DataFrame
    write_batch: Callable[[DataFrame, int], Any]
    output_mode: str = "append"
    trigger_s: float | None = None
    """Micro-batch interval; default ``jobs.trigger_s``."""
    late_events: Callable[[], int] | None = None
    """Events dropped as late so far, when the writer drops them (not Spark's state store)."""


@dataclass
class JobSpec:
    name: str
    queries: list[QuerySpec] = field(default_factory=list)


Builder = Callable[..., JobSpec]
"""A job module's ``build(spark, settings, starting_offsets=...)``."""
