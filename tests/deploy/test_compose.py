"""deploy/compose.yaml would start: every service of the stack is there, with an image, a
health check, its durable folders on volumes, and commands and settings our CLI knows.

No Docker engine runs here; ``docker-compose config`` (the Python client, no daemon needed)
reads the real file, with its anchors, merges and defaults resolved, and the checks run on what
it resolved: the file as Compose would run it. A copy of the real file with one mistake put in
is caught by the same checks."""

from __future__ import annotations

import os
import re
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
    "kafka", "kafka-ui", "cassandra", "spark-master", "spark-worker", "collector", "jobs",
    "dashboard", "bookstore",
}  # fmt: skip
SEED_STACK = {
    "zookeeper": "kafka", "kafka": "kafka", "kafka-ui": "kafka-ui", "spark-master": "spark-master",
    "spark-worker": "spark-worker", "cassandra": "cassandra",
}  # fmt: skip
"""Each service of seed 002's docker-compose.yml -> ours that does its work (KRaft: the kafka
service is its own controller, where the seed ran ZooKeeper)."""
PULLED = {"kafka", "kafka-ui", "cassandra"}
DURABLE = {"kafka": "/var/lib/kafka/data", "cassandra": "/var/lib/cassandra", "jobs": "/data"}


def resolved(path: Path) -> dict[str, Any]:
    """The compose file at ``path`` as ``docker-compose config`` resolves it (fails the test
    when the client refuses the file)."""
    client = shutil.which("docker-compose")
    if client is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs docker-compose to check the file: apt-get install docker-compose")
        pytest.skip("docker-compose is not installed: apt-get install docker-compose")
    done = subprocess.run(
        [client, "-f", str(path), "config"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    loaded: dict[str, Any] = yaml.safe_load(done.stdout)
    return loaded


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return resolved(COMPOSE)


def test_docker_compose_config_accepts_the_file(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES
    assert set(compose["volumes"]) == {"kafka-data", "cassandra-data", "clickstream-data"}


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


def check_services(compose: dict[str, Any]) -> None:
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
    assert set(built) == SERVICES - PULLED
    for name in built:  # the context, made absolute by Compose, is this repository
        build = services[name]["build"]
        assert Path(build["context"]) == ROOT, name
        assert (ROOT / build["dockerfile"]).is_file(), name


def check_volumes(compose: dict[str, Any]) -> None:
    volumes = set(compose["volumes"])

    def mounts(service: str) -> dict[str, str]:  # folder in the container -> volume
        return {m.split(":")[1]: m.split(":")[0] for m in compose["services"][service]["volumes"]}

    for name, folder in DURABLE.items():
        assert folder in mounts(name), f"{name}: {folder} is not on a volume"
        assert mounts(name)[folder] in volumes, f"{name}: {folder} is not on a named volume"
    # Executors write the jobs' checkpoints (state stores) at the path the driver gave.
    assert mounts("spark-worker") == mounts("jobs")
    assert compose["services"]["jobs"]["environment"]["CLICKSTREAM_DATA_DIR"] == "/data"


def check_commands(compose: dict[str, Any]) -> None:
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


def test_every_service_of_the_seeds_stack_is_there(compose: dict[str, Any]) -> None:
    services = compose["services"]
    missing = {seed: ours for seed, ours in SEED_STACK.items() if ours not in services}
    assert not missing, f"the seed's services with no counterpart: {missing}"
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    ui = services["kafka-ui"]
    assert ui["environment"]["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == "kafka:9092"
    assert ui["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_every_part_of_the_stack_is_a_service_with_a_health_check(compose: dict[str, Any]) -> None:
    check_services(compose)


def test_durable_folders_are_on_named_volumes(compose: dict[str, Any]) -> None:
    check_volumes(compose)


def test_commands_and_settings_exist_in_our_cli(compose: dict[str, Any]) -> None:
    check_commands(compose)


# One mistake put into a copy of the real file, and what the checks say about it.
# fmt: off
MISTAKES = [
    ('"--master", "spark://', '"--mastr", "spark://', check_commands, click.UsageError, "mastr"),
    (
        'command: ["bookstore"]', 'command: ["bookstor"]', check_commands, click.UsageError,
        "No such command 'bookstor'",
    ),
    (
        "CLICKSTREAM_CASSANDRA_CONTACT_POINTS: cassandra",
        "CLICKSTREAM_CASSANDRA_CONTACT_POINT: cassandra",
        check_commands, AssertionError, "CLICKSTREAM_CASSANDRA_CONTACT_POINT'",
    ),
    (
        '"web-live", "sessions"]', '"web-live"]', check_commands, AssertionError, "sessions"
    ),  # a job left out
    (
        "cassandra-data:/var/lib/cassandra", "/srv/cassandra:/var/lib/cassandra", check_volumes,
        AssertionError, "cassandra: /var/lib/cassandra is not on a named volume",
    ),
    (
        'test: ["CMD", "cqlsh"', 'test: ["CMD-SHELL", "cqlsh"', check_services, AssertionError,
        "cassandra",
    ),
]
# fmt: on


@pytest.mark.parametrize(
    ("real", "wrong", "check", "error", "words"), MISTAKES, ids=[m[1] for m in MISTAKES]
)
def test_a_wrong_command_or_setting_would_be_caught(
    tmp_path: Path, real: str, wrong: str, check: Any, error: type[Exception], words: str
) -> None:
    text = COMPOSE.read_text()
    assert text.count(real) == 1, f"{real!r} is no longer in {COMPOSE.name}: update this test"
    broken = tmp_path / "deploy" / "compose.yaml"  # beside a copy of the build context
    broken.parent.mkdir()
    broken.write_text(text.replace(real, wrong))
    (tmp_path / "deploy" / "Dockerfile").write_text((ROOT / "deploy" / "Dockerfile").read_text())
    mistaken = resolved(broken)
    for service in mistaken["services"].values():  # the copy's build context is tmp_path
        if "build" in service:
            assert Path(service["build"]["context"]) == tmp_path
            service["build"]["context"] = str(ROOT)
    with pytest.raises(error, match=re.escape(words)):
        check(mistaken)


def test_the_image_builds_where_a_docker_daemon_runs() -> None:
    """The Dockerfile is built where a Docker daemon answers (CI machines with one); elsewhere
    the test is skipped and says why (``-ra`` prints it)."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client here: the image is built where a Docker daemon runs")
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        pytest.skip(f"no Docker daemon answers here ({info.stderr.strip()[:200]})")
    done = subprocess.run(
        [docker, "build", "-f", str(ROOT / "deploy" / "Dockerfile"), "-t", "clickstream:test",
         str(ROOT)],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
