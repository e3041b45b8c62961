"""Java libraries from a Maven repository, resolved on first use and cached.

The embedded broker (Apache Kafka) and Spark's Kafka connector are Maven artifacts. They are
resolved with their runtime dependencies by Apache Ivy, whose jar ships inside PySpark
(``pyspark/jars/ivy-*.jar``), so no Maven install is needed. Each set of artifacts is retrieved
once into its own folder of the jar cache (``jars.dir``) with a ``classpath.txt`` listing its
files; later runs read that list and start no Ivy at all. A folder filled on another machine
(``clickstream jars fetch --dir DIR``) and copied here works the same way.

Ivy runs in a JVM child that never outlives the download: an exception in the waiting thread
(:class:`clickstream.signals.Stopped` on a Ctrl-C or SIGTERM) kills it, and on Linux it dies
with its parent even when the parent is killed (SIGKILL).
"""

from __future__ import annotations

import fcntl
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

from clickstream.children import die_with_parent
from clickstream.errors import ConfigError, TerminalError

Progress = Callable[[str], None]
CLASSPATH_FILE = "classpath.txt"
MAVEN_CENTRAL = "https://repo1.maven.org/maven2/"


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


def ivy_jar() -> Path:
    """The Ivy jar that PySpark ships."""
    import pyspark

    found = sorted(Path(pyspark.__file__).parent.joinpath("jars").glob("ivy-*.jar"))
    if not found:
        raise TerminalError("no ivy-*.jar in the installed pyspark: reinstall pyspark")
    return found[-1]


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
    """The jars of ``jar_set`` and their runtime dependencies: from the cache, or downloaded.

    Raises :class:`JarsUnavailableError` with the repository's answer when they cannot be
    downloaded (no network, a proxy, a missing version).
    """
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
        return _download(jar_set, jars_dir, java, repository, progress, timeout_s)


def _download(
    jar_set: JarSet,
    jars_dir: Path,
    java: Path,
    repository: str,
    progress: Progress | None,
    timeout_s: float,
) -> list[Path]:
    say = progress or (lambda _line: None)
    target = jars_dir / jar_set.folder
    for stale in jars_dir.glob(f".{jar_set.folder}-*"):  # left by a killed fetch (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f".{jar_set.folder}-", dir=jars_dir) as scratch:
        work = Path(scratch)
        (work / "ivy.xml").write_text(_ivy_module(jar_set))
        (work / "ivysettings.xml").write_text(_ivy_settings(jars_dir / "ivy" / "cache", repository))
        retrieved = work / "jars"
        command = [
            str(java),
            "-jar",
            str(ivy_jar()),
            "-settings",
            str(work / "ivysettings.xml"),
            "-ivy",
            str(work / "ivy.xml"),
            "-retrieve",
            f"{retrieved}/[artifact]-[revision](-[classifier]).[ext]",
        ]
        say(f"fetching {jar_set.title} from {repository} into {target} (once)")
        output = _run_ivy(command, jar_set.title, say, timeout_s)
        jars = sorted(retrieved.glob("*.jar")) if retrieved.is_dir() else []
        if output.returncode != 0 or not jars:
            raise JarsUnavailableError(
                f"cannot download {jar_set.title} from {repository}: {_first_error(output.lines)}"
            )
        (retrieved / CLASSPATH_FILE).write_text("".join(f"{jar.name}\n" for jar in jars))
        if target.exists():  # an incomplete folder (no classpath.txt, or a missing jar)
            shutil.rmtree(target)
        retrieved.rename(target)
    result = cached(jar_set, jars_dir)
    assert result is not None
    size = sum(jar.stat().st_size for jar in result) / 1e6
    say(f"fetched {jar_set.title}: {len(result)} jars, {size:.1f} MB")
    return result


@dataclass
class _IvyOutput:
    returncode: int
    lines: list[str]


_DOWNLOADING = re.compile(r"^downloading (\S+) \.\.\.")


def _run_ivy(command: list[str], title: str, say: Progress, timeout_s: float) -> _IvyOutput:
    """Run Ivy, saying every few seconds how far the download is. Any exception on the way
    (a stop signal turned into :class:`~clickstream.signals.Stopped`) kills Ivy first."""
    lines: list[str] = []
    started = last = time.monotonic()
    modules = downloads = 0
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        preexec_fn=die_with_parent(),
    )
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip()
            lines.append(line)
            if line.strip().startswith("found "):
                modules += 1
            match = _DOWNLOADING.match(line.strip())
            if match:
                downloads += 1
            now = time.monotonic()
            if now - last >= 3.0:
                last = now
                say(
                    f"  {title}: {modules} modules resolved, {downloads} files downloaded "
                    f"({now - started:.0f} s)"
                )
            if now - started > timeout_s:
                process.kill()
                lines.append(f"no answer within {timeout_s:g} s")
                break
        returncode = process.wait()
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        if process.stdout is not None:
            process.stdout.close()
    return _IvyOutput(returncode, lines)


def _first_error(lines: Sequence[str]) -> str:
    """The most telling line of a failed Ivy run."""
    causes = [line for line in lines if line.startswith("Caused by: ")]
    if causes:  # Ivy itself failed (settings, file system): the root cause
        return causes[-1].removeprefix("Caused by: ").strip()
    for marker in ("Server access error", "not found", "UNRESOLVED", "unresolved", "ERROR"):
        for line in lines:
            if marker in line:
                return re.sub(r"\s+", " ", line.strip().strip(":").strip())
    tail = [line.strip() for line in lines if line.strip()]
    return tail[-1] if tail else "Ivy printed nothing"


def _ivy_module(jar_set: JarSet) -> str:
    deps = "\n".join(
        f"    <dependency org={quoteattr(a.group)} name={quoteattr(a.name)} "
        f"rev={quoteattr(a.version)}/>"
        for a in jar_set.artifacts
    )
    excludes = "\n".join(
        f"    <exclude org={quoteattr(group)} module={quoteattr(name)}/>"
        for group, name in jar_set.excludes
    )
    return f"""<ivy-module version="2.0">
  <info organisation="clickstream" module={quoteattr(jar_set.folder)}/>
  <configurations><conf name="default"/></configurations>
  <dependencies defaultconfmapping="default->default">
{deps}
{excludes}
  </dependencies>
</ivy-module>
"""


def _ivy_settings(cache: Path, repository: str) -> str:
    root = repository if repository.endswith("/") else repository + "/"
    return f"""<ivysettings>
  <settings defaultResolver="main"/>
  <caches defaultCacheDir={quoteattr(str(cache))} lockStrategy="artifact-lock-nio"/>
  <resolvers>
    <ibiblio name="main" m2compatible="true" root={quoteattr(root)}/>
  </resolvers>
</ivysettings>
"""
