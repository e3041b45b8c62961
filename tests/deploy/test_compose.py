"""deploy/compose.yaml would start: every service of the stack is there, with an image, a
health check, its durable folders on volumes, and commands and settings our CLI knows.

No Docker engine runs here; ``docker-compose config`` (the Python client, no daemon needed)
checks the file too when it is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from clickstream.cli import cli
from clickstream.jobs import builders
from clickstream.settings import all_env_names, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
SERVICES = {
    "kafka", "cassandra", "spark-master", "spark-worker", "collector", "jobs", "dashboard",
    "bookstore",
}  # fmt: skip
DURABLE = {"kafka": "/var/lib/kafka/data", "cassandra": "/var/lib/cassandra", "jobs": "/data"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def parse_cli(args: list[str]) -> click.Context:
    """Parse ``clickstream ARGS`` down to the last subcommand (options checked, nothing run)."""
    ctx = cli.make_context("clickstream", list(args), resilient_parsing=False)
    command: click.Command = cli
    while isinstance(command, click.Group):
        name, sub, rest = command.resolve_command(
            ctx, [*getattr(ctx, "_protected_args", []), *ctx.args]
        )
        assert sub is not None, f"no command {name!r} in clickstream"
        ctx = sub.make_context(name or "", rest, parent=ctx)
        command = sub
    return ctx


def test_every_part_of_the_stack_is_a_service_with_a_health_check(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        assert service.get("image"), name
        assert service["healthcheck"]["test"][0] == "CMD", name
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["cassandra"]["image"].startswith("cassandra:5")
    # The clickstream services (and Spark, which must be exactly our PySpark) build one image.
    built = [n for n, s in services.items() if "build" in s]
    assert set(built) == SERVICES - {"kafka", "cassandra"}
    assert (
        ROOT / services["jobs"]["build"]["context"].replace("..", ".") / "deploy/Dockerfile"
    ).is_file()


def test_durable_folders_are_on_named_volumes(compose: dict[str, Any]) -> None:
    volumes = set(compose["volumes"])
    for name, folder in DURABLE.items():
        mounts = dict(m.split(":", 1)[::-1] for m in compose["services"][name]["volumes"])
        assert folder in mounts, name
        assert mounts[folder] in volumes
    # Executors write the jobs' checkpoints (state stores) at the path the driver gave.
    assert compose["services"]["spark-worker"]["volumes"] == compose["services"]["jobs"]["volumes"]
    assert compose["services"]["jobs"]["environment"]["CLICKSTREAM_DATA_DIR"] == "/data"


def test_commands_and_settings_exist_in_our_cli(compose: dict[str, Any]) -> None:
    known = all_env_names()
    checked = 0
    for name, service in compose["services"].items():
        if "build" not in service:
            continue
        environment = service.get("environment", {})
        unknown = [k for k in environment if k not in known]
        assert unknown == [], f"{name}: settings clickstream does not have: {unknown}"
        load_settings(environ={k: str(v) for k, v in environment.items()})  # values valid
        if service.get("entrypoint") == ["spark-class"]:
            assert service["command"][0].startswith("org.apache.spark.deploy.")
            assert shutil.which("spark-class") or (ROOT / ".venv/bin/spark-class").is_file()
            continue
        ctx = parse_cli(service["command"])
        checked += 1
        if ctx.command.name == "run":  # the jobs: every one must exist
            assert set(ctx.params["names"]) <= set(builders()), ctx.params["names"]
            assert set(ctx.params["names"]) == set(builders())
            assert ctx.params["master"] == "spark://spark-master:7077"
    assert checked == 4


def test_a_wrong_command_or_setting_would_be_caught() -> None:
    with pytest.raises(click.UsageError):
        parse_cli(["jobs", "run", "--mastr", "x", "bookstore"])
    with pytest.raises(click.UsageError):
        parse_cli(["bookstor"])
    assert "CLICKSTREAM_CASSANDRA_CONTACT_POINT" not in all_env_names()


def test_docker_compose_config_accepts_the_file() -> None:
    client = shutil.which("docker-compose")
    if client is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs docker-compose to check the file: apt-get install docker-compose")
        pytest.skip("docker-compose is not installed: apt-get install docker-compose")
    done = subprocess.run(
        [client, "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
