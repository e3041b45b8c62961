"""The built-in jobs: each module reads its topics, transforms, and writes to sinks, built
from the engine in :mod:`clickstream.streaming`. This package names them."""

from __future__ import annotations

from collections.abc import Sequence

from clickstream.errors import ConfigError
from clickstream.streaming.spec import Builder

ORDER = ("sessions", "shop", "web-live", "bookstore", "songs", "joins")


def builders() -> dict[str, Builder]:
    """Every job's builder by name (the modules are imported on first use: they import Spark)."""
    from clickstream.jobs import bookstore, joins, sessions, shop, songs, web_live

    modules = (sessions, shop, web_live, bookstore, songs, joins)
    return {module.NAME: module.build for module in modules}


def pick(names: Sequence[str]) -> list[Builder]:
    """The builders of jobs ``names`` (each once, in order); :class:`ConfigError` names the
    first unknown job."""
    found = builders()
    unknown = [name for name in names if name not in found]
    if unknown:
        raise ConfigError(f"unknown job {unknown[0]!r}; jobs: {', '.join(sorted(found))}")
    return [found[name] for name in dict.fromkeys(names)]


def builder(name: str) -> Builder:
    """The builder of job ``name``."""
    return pick([name])[0]
