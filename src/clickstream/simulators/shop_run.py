"""The shop simulator as ``clickstream simulate shop`` runs it: a shopping log (or synthetic
rows) replayed into Kafka with its progress on stderr, or a synthetic log written to a file."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from clickstream.errors import ClickstreamError
from clickstream.settings import Settings
from clickstream.simulators.shop import (
    ReplayProgress,
    ShopCsv,
    ShopRow,
    ShopStats,
    count_rows,
    generate_shop_rows,
    read_shop_csv,
    replay_shop,
    write_shop_csv,
)
from clickstream.simulators.shop_log import Numbered


def write_synthetic_log(
    out: str | Path, rows: int, seed: int | None, force: bool
) -> tuple[int, int]:
    """Write ``rows`` synthetic rows to ``out`` in the log's format (an existing file only with
    ``force``); return the rows written and how many users they have."""
    if Path(out).exists() and not force:
        raise ClickstreamError(f"{out} already exists: pass --force to overwrite it")
    users: set[int] = set()

    def noted(made: Iterable[ShopRow]) -> Iterator[ShopRow]:
        for row in made:
            users.add(row.user_id)
            yield row

    written = write_shop_csv(
        out, noted(itertools.islice(generate_shop_rows(seed), rows)), overwrite=True
    )
    return written, len(users)


class ShopSource:
    """The rows to replay: the log at ``path`` (opened, its header read, now) or synthetic rows
    from ``seed``. As a context manager, it closes the file at the end."""

    def __init__(self, path: str | Path | None, seed: int | None = None) -> None:
        self.path = path
        self.rows: Iterable[ShopRow | Numbered] = (
            read_shop_csv(path) if path is not None else generate_shop_rows(seed)
        )

    def total(self, count: int | None) -> int | None:
        """How many rows the replay will go through, for its progress (None: endless)."""
        return count if count or self.path is None else count_rows(self.path)

    def close(self) -> None:
        if isinstance(self.rows, ShopCsv):
            self.rows.close()

    def __enter__(self) -> ShopSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_replay(
    settings: Settings,
    source: ShopSource,
    *,
    stop: threading.Event,
    topic: str | None = None,
    rate: float,
    start_ms: int | None = None,
    strict: bool = False,
    count: int | None = None,
    duration_s: float | None = None,
    seed_format: bool = False,
) -> ShopStats:
    """Replay ``source`` to ``topic`` (default ``topics.shop``; with ``seed_format``, the gender
    byte alone to ``topics.shop_genders``) until its end, ``count``,
    ``duration_s`` or ``stop``, showing the progress and the first malformed rows on stderr. A
    strict replay raises :class:`~clickstream.simulators.shop.MalformedRowError`, whose
    ``stats`` say what was sent before the bad row."""
    name = topic or (settings.topics.shop_genders if seed_format else settings.topics.shop)
    with ReplayProgress(name, source.total(count)) as progress:
        return replay_shop(
            settings,
            source.rows,
            topic=name,
            rate=rate,
            start=start_ms,
            strict=strict,
            count=count,
            duration_s=duration_s,
            progress=progress,
            on_skip=progress.skipped,
            stop=stop,
            seed_format=seed_format,
        )
