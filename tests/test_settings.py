"""Settings: defaults, TOML, environment, and one-line errors that name the setting."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from clickstream.errors import ConfigError
from clickstream.settings import all_env_names, load_settings
from clickstream.streaming import checkpoint
from tests.conftest import cli_env


def test_defaults_mean_embedded_broker() -> None:
    settings = load_settings(environ={})
    assert settings.embedded_broker
    assert checkpoint.local_root(settings) == Path(".clickstream/checkpoints")
    assert settings.broker_dir == Path(".clickstream/kafka")
    assert settings.jars_dir == Path(".clickstream/jars")
    moved = load_settings(environ={"CLICKSTREAM_DATA_DIR": "/srv/cs"})
    assert (moved.broker_dir, moved.jars_dir) == (Path("/srv/cs/kafka"), Path("/srv/cs/jars"))


def test_environment_overrides_toml(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        'data_dir = "/srv/cs"\n[kafka]\nclient_id = "from-file"\nbootstrap_servers = "k1:9092"\n'
        "[topics]\npartitions = 8\n"
    )
    assert not load_settings(config, environ={}).embedded_broker
    settings = load_settings(
        config,
        environ={
            "CLICKSTREAM_TOPICS_PARTITIONS": "2",
            "CLICKSTREAM_SPARK_UI": "true",
            "CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS": "",  # empty: unsets the file's value
        },
    )
    assert settings.kafka.client_id == "from-file"
    assert settings.topics.partitions == 2
    assert settings.spark.ui is True
    assert settings.data_dir == Path("/srv/cs")
    assert settings.kafka.bootstrap_servers is None
    assert settings.embedded_broker


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[kafka]\nbootstrap_servers = "k1:9092,k2:9092"\n')
    settings = load_settings(environ={"CLICKSTREAM_CONFIG": str(config)})
    assert settings.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert not settings.embedded_broker


def test_count_trigger_zero_means_back_to_back_batches() -> None:
    assert (
        load_settings(environ={"CLICKSTREAM_JOBS_COUNT_TRIGGER_S": "0"}).jobs.count_trigger_s == 0
    )


def test_settings_are_frozen() -> None:
    settings = load_settings(environ={})
    with pytest.raises(ValueError, match="frozen"):
        settings.kafka.client_id = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"CLICKSTREAM_TOPICS_PARTITIONS": "zero"}, "CLICKSTREAM_TOPICS_PARTITIONS='zero'"),
        ({"CLICKSTREAM_TOPICS_PARTITIONS": "0"}, "greater than or equal to 1"),
        ({"CLICKSTREAM_JOBS_COUNT_TRIGGER_S": "-1"}, "greater than or equal to 0"),
        (
            {"CLICKSTREAM_KAFKA_SECURITY_PROTOCOL": "TLS"},
            "CLICKSTREAM_KAFKA_SECURITY_PROTOCOL='TLS'",
        ),
        (
            {"CLICKSTREAM_KAFKA_BOOTSTRAP_SERVER": "x"},
            "did you mean CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS",
        ),
        (
            {"CLICKSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "needs kafka.sasl_mechanism (CLICKSTREAM_KAFKA_SASL_MECHANISM)",
        ),
        (
            {"CLICKSTREAM_CONFIG": "/nonexistent.toml"},
            "config file /nonexistent.toml does not exist",
        ),
    ],
)
def test_invalid_settings_name_the_setting(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=environ)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_invalid_toml_names_key_and_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[spark]\ndriver_memory = 'lots'\n")
    with pytest.raises(ConfigError, match=r"invalid setting spark.driver_memory in .*c.toml"):
        load_settings(config, environ={})
    config.write_text("[spark]\nmaster_url = 'x'\n")
    with pytest.raises(ConfigError, match=r"unknown setting spark\.master_url"):
        load_settings(config, environ={})
    config.write_text("[spark\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config, environ={})


def test_cli_prints_one_line_without_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "clickstream", "config"],
        env=cli_env(CLICKSTREAM_SPARK_MASTER="local[2]", CLICKSTREAM_BROKER_PORT="http"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: invalid setting CLICKSTREAM_BROKER_PORT='http': "
        "Input should be a valid integer, unable to parse string as an integer"
    ]
    assert "Traceback" not in result.stderr


def test_every_setting_is_documented() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    missing = [name for name in all_env_names() if name not in doc]
    assert missing == []


SECRETS = ("sasl-secret-1", "key-pass-2", "board-token-3", "write-key-4", "write-key-5")


def test_config_prints_toml_that_reads_back_as_the_same_settings(tmp_path: Path) -> None:
    config = tmp_path / "in.toml"
    config.write_text(
        'data_dir = "/srv/clickstream data"\n'
        "[kafka]\n"
        'bootstrap_servers = "k1:9092,k2:9092"\n'
        'security_protocol = "SASL_SSL"\n'
        'sasl_mechanism = "PLAIN"\n'
        'sasl_username = "user"\n'
        f'sasl_password = "{SECRETS[0]}"\n'
        f'ssl_key_password = "{SECRETS[1]}"\n'
        'client_id = "a \\"quoted\\" \\\\ back\\nslash\\t é ✓ \\u007f \\u0001 [x]"\n'
        "timeout_s = 1e-05\n"
        "[collector]\n"
        'allowed_origins = ["https://a.example", "https://b.example"]\n'
        f'write_keys = {{ "shop.example.com" = "{SECRETS[3]}", plain = "{SECRETS[4]}" }}\n'
        "[dashboard]\n"
        f'token = "{SECRETS[2]}"\n'
        "allowed_origins = []\n"
        "[jobs]\n"
        "count_slide_s = 1\n"
        "count_trigger_s = 0.25\n"
    )
    env = cli_env(CLICKSTREAM_CONFIG=str(config), CLICKSTREAM_SPARK_UI="true")
    original = load_settings(environ=env)
    assert original.kafka.client_id.endswith("\x7f \x01 [x]")
    result = subprocess.run(
        [sys.executable, "-m", "clickstream", "config"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for secret in SECRETS:
        assert secret not in result.stdout
    printed = tomllib.loads(result.stdout)
    assert printed["collector"]["write_keys"] == {
        "shop.example.com": "**********",
        "plain": "**********",
    }
    assert printed["kafka"]["sasl_password"] == "**********"
    assert printed["dashboard"]["token"] == "**********"

    saved = tmp_path / "out.toml"
    saved.write_text(result.stdout)
    again = load_settings(config_file=saved, environ={})
    expected = original.model_dump(mode="json")  # secrets are masked in it too
    expected["collector"]["write_keys"] = {
        site: "**********" for site in original.collector.write_keys
    }
    assert again.model_dump(mode="json") == expected
    assert again.kafka.client_id == original.kafka.client_id


def test_settings_toml_masks_secrets_and_comments_out_unset_settings(tmp_path: Path) -> None:
    from clickstream.settings.dump import MASK, settings_toml

    settings = load_settings(
        environ={
            "CLICKSTREAM_KAFKA_SASL_PASSWORD": SECRETS[0],
            "CLICKSTREAM_KAFKA_CLIENT_ID": 'tab\t "quote" del\x7f',
            "CLICKSTREAM_COLLECTOR_WRITE_KEYS": f"a.example:{SECRETS[3]}",
        }
    )
    text = settings_toml(settings)
    assert SECRETS[0] not in text
    assert SECRETS[3] not in text
    assert "# ssl_key_password = (unset)" in text.splitlines()
    assert tomllib.loads(text)["collector"]["write_keys"] == {"a.example": MASK}
    saved = tmp_path / "saved.toml"
    saved.write_text(text)
    again = load_settings(config_file=saved, environ={})
    assert again.kafka.client_id == 'tab\t "quote" del\x7f'
    assert again.kafka.sasl_password is not None
    assert again.kafka.sasl_password.get_secret_value() == MASK
    assert again.kafka.ssl_key_password is None
    assert again.collector.write_keys == {"a.example": MASK}
