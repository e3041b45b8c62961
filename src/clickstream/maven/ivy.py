"""Sets of artifacts resolved by Apache Ivy, whose jar ships inside PySpark
(``pyspark/jars/ivy-*.jar``): a set without a lock file, and ``scripts/lock_jars.py``, which
writes the lock files.

Ivy runs in a JVM child that never outlives the download: an exception in the waiting thread
(:class:`clickstream.signals.Stopped` on a Ctrl-C or SIGTERM) kills it, and on Linux it dies
with its parent even when the parent is killed (SIGKILL).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

from clickstream.children import die_with_parent
from clickstream.errors import TerminalError
from clickstream.maven import Clock, JarSet, JarsUnavailableError, Progress, install

FLAT = "[artifact]-[revision](-[classifier]).[ext]"
"""A jar's name in a set's folder (and in the repository)."""
TREE = "[organisation]/[module]/[revision]/" + FLAT
"""Where ``retrieve(..., pattern=TREE)`` puts a jar: its coordinates can be read back."""


def ivy_jar() -> Path:
    """The Ivy jar that PySpark ships."""
    import pyspark

    found = sorted(Path(pyspark.__file__).parent.joinpath("jars").glob("ivy-*.jar"))
    if not found:
        raise TerminalError("no ivy-*.jar in the installed pyspark: reinstall pyspark")
    return found[-1]


def download(
    jar_set: JarSet,
    jars_dir: Path,
    java: Path,
    repository: str,
    say: Progress,
    timeout_s: float,
) -> None:
    """Resolve ``jar_set`` with Ivy into its folder of ``jars_dir`` (the caller holds its lock)."""
    with tempfile.TemporaryDirectory(prefix=f".{jar_set.folder}-", dir=jars_dir) as scratch:
        say(f"fetching {jar_set.title} from {repository} into {jars_dir / jar_set.folder} (once)")
        cache = jars_dir / "ivy" / "cache"
        retrieved = retrieve(jar_set, Path(scratch), cache, java, repository, say, timeout_s)
        install(jar_set, retrieved, jars_dir)


def retrieve(
    jar_set: JarSet,
    work: Path,
    cache: Path,
    java: Path,
    repository: str,
    say: Progress,
    timeout_s: float,
    pattern: str = FLAT,
) -> Path:
    """Resolve ``jar_set`` (Ivy's cache in ``cache``) and copy its jars to ``work/jars`` by
    ``pattern``; that folder."""
    (work / "ivy.xml").write_text(_ivy_module(jar_set))
    (work / "ivysettings.xml").write_text(_ivy_settings(cache, repository))
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
        f"{retrieved}/{pattern}",
    ]
    output = _run_ivy(command, jar_set.title, say, timeout_s)
    if output.returncode != 0 or not any(retrieved.rglob("*.jar")):
        raise JarsUnavailableError(
            f"cannot download {jar_set.title} from {repository}: {_first_error(output.lines)}"
        )
    return retrieved


@dataclass
class _IvyOutput:
    returncode: int
    lines: list[str]


_DOWNLOADING = re.compile(r"^downloading (\S+) \.\.\.")


def _run_ivy(command: list[str], title: str, say: Progress, timeout_s: float) -> _IvyOutput:
    """Run Ivy, saying every few seconds how far the download is. Any exception on the way
    (a stop signal turned into :class:`~clickstream.signals.Stopped`) kills Ivy first."""
    lines: list[str] = []
    clock = Clock()
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
            if clock.due():
                say(
                    f"  {title}: {modules} modules resolved, {downloads} files downloaded "
                    f"({clock.elapsed():.0f} s)"
                )
            if clock.elapsed() > timeout_s:
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
