"""Java libraries from a Maven repository, fetched on first use and cached.

The embedded broker (Apache Kafka) and Spark's Kafka connector are Maven artifacts with runtime
dependencies. Each set is fetched once into its own folder of the jar cache (``jars.dir``) with a
``classpath.txt`` listing its files; later runs read that list and contact no repository. A
folder filled on another machine (``clickstream jars fetch --dir DIR``) and copied here works the
same way.

A set with a lock file (:mod:`clickstream.maven.locked`: the files Apache Ivy resolved for it,
each with its SHA-1, written by ``scripts/lock_jars.py``) is downloaded file by file, several at
once, and checked: seconds instead of the half-minute Ivy spends fetching the dependency tree's
descriptors one after another. A set without one (a lock written for other artifacts than the
set's) is resolved by Ivy (:mod:`clickstream.maven.ivy`), whose jar ships inside PySpark, so no
Maven install is needed.
"""

from __future__ import annotations

import fcntl
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clickstream.errors import ConfigError, TerminalError

__all__ = [
    "CLASSPATH_FILE",
    "LOCKS",
    "MAVEN_CENTRAL",
    "Artifact",
    "JarSet",
    "JarsUnavailableError",
    "Progress",
    "cached",
    "resolve",
]

Progress = Callable[[str], None]
CLASSPATH_FILE = "classpath.txt"
MAVEN_CENTRAL = "https://repo1.maven.org/maven2/"
LOCKS = Path(__file__).parent / "locks"
"""The lock files of the sets clickstream itself needs, one ``<folder>.txt`` each."""


class JarsUnavailableError(TerminalError):
    """The artifacts are not in the cache and could not be downloaded."""


@dataclass(frozen=True)
class Artifact:
    """``group:name:version`` of a Maven artifact."""

    group: str
    name: str
    version: str

    @classmethod
    def parse(cls, coordinate: str) -> Artifact:
        parts = coordinate.split(":")
        if len(parts) != 3 or not all(parts):
            raise ConfigError(f"expected group:name:version, got {coordinate!r}")
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.group}:{self.name}:{self.version}"


@dataclass(frozen=True)
class JarSet:
    """Artifacts resolved together into ``<jars dir>/<folder>``."""

    folder: str
    """Folder name in the jar cache, e.g. ``kafka-4.1.2``."""
    title: str
    """What the user reads in progress lines: ``Apache Kafka 4.1.2``."""
    artifacts: tuple[Artifact, ...]
    excludes: tuple[tuple[str, str], ...] = ()
    """(group, name) pairs left out with their dependencies (already on the classpath)."""
    lock: Path | None = None
    """Its lock file; default ``LOCKS/<folder>.txt``."""

    @property
    def lock_file(self) -> Path:
        return self.lock or LOCKS / f"{self.folder}.txt"

    @property
    def key(self) -> str:
        """What a lock file was written for: the artifacts and the excludes."""
        excluded = ",".join(f"!{group}:{name}" for group, name in self.excludes)
        return " ".join(str(a) for a in self.artifacts) + (f" {excluded}" if excluded else "")


class Clock:
    """How long a fetch has run, and whether its next progress line is due (every 3 s)."""

    EVERY_S = 3.0

    def __init__(self) -> None:
        self.started = self._last = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.EVERY_S:
            return False
        self._last = now
        return True


def cached(jar_set: JarSet, jars_dir: Path) -> list[Path] | None:
    """The jars of ``jar_set`` if its folder is complete, else None."""
    folder = jars_dir / jar_set.folder
    try:
        names = (folder / CLASSPATH_FILE).read_text().split()
    except OSError:
        return None
    jars = [folder / name for name in names]
    return jars if jars and all(jar.is_file() for jar in jars) else None


def resolve(
    jar_set: JarSet,
    jars_dir: Path,
    *,
    java: Path,
    repository: str = MAVEN_CENTRAL,
    progress: Progress | None = None,
    timeout_s: float = 900.0,
) -> list[Path]:
    """The jars of ``jar_set`` and their runtime dependencies: from the cache, or downloaded
    (from its lock file when it has one that matches it, else resolved by Ivy).

    Raises :class:`JarsUnavailableError` with the repository's answer when they cannot be
    downloaded (no network, a proxy, a missing version, a file that fails its checksum).
    """
    from clickstream.maven import ivy, locked

    found = cached(jar_set, jars_dir)
    if found is not None:
        return found
    jars_dir = jars_dir.absolute()  # Ivy takes absolute paths only (a relative data_dir is not)
    jars_dir.mkdir(parents=True, exist_ok=True)
    with (jars_dir / f".{jar_set.folder}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be fetching the same set
        found = cached(jar_set, jars_dir)
        if found is not None:
            return found
        for stale in jars_dir.glob(f".{jar_set.folder}-*"):  # left by a killed fetch (we hold
            shutil.rmtree(stale, ignore_errors=True)  # the lock)
        say = progress or (lambda _line: None)
        files = locked.read(jar_set)
        if files is not None:
            locked.download(jar_set, files, jars_dir, repository, say, timeout_s)
        else:
            ivy.download(jar_set, jars_dir, java, repository, say, timeout_s)
    result = cached(jar_set, jars_dir)
    assert result is not None
    size = sum(jar.stat().st_size for jar in result) / 1e6
    say(f"fetched {jar_set.title}: {len(result)} jars, {size:.1f} MB")
    return result


def install(jar_set: JarSet, retrieved: Path, jars_dir: Path) -> None:
    """Make the folder of fetched jars ``retrieved`` the set's folder, with its classpath."""
    jars = sorted(retrieved.glob("*.jar"))
    (retrieved / CLASSPATH_FILE).write_text("".join(f"{jar.name}\n" for jar in jars))
    target = jars_dir / jar_set.folder
    if target.exists():  # an incomplete folder (no classpath.txt, or a missing jar)
        shutil.rmtree(target)
    retrieved.rename(target)
