"""The jar fetch: a set with a lock file comes file by file from the repository (a real HTTP
server on loopback here), each file checked against its size and SHA-1, with progress on a slow
download; a bad or missing file fails the fetch by name and installs nothing; a lock written
for other artifacts sends the set to Ivy; and every set clickstream and its tests fetch has a
lock that matches it."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from clickstream.broker.node import KAFKA_JARS
from clickstream.maven import MAVEN_CENTRAL, Artifact, JarSet, JarsUnavailableError, locked, resolve
from clickstream.spark.session import kafka_connector
from tests.cassandra_node import CASSANDRA_JARS
from tests.conftest import JARS_DIR
from tests.maven_repository import cache_jars, repository

JAVA = Path("java")


@pytest.fixture(scope="module", autouse=True)
def _served() -> None:
    cache_jars()  # what the loopback repository serves


@pytest.mark.parametrize("jar_set", [KAFKA_JARS, kafka_connector(), CASSANDRA_JARS], ids=str)
def test_every_jar_set_has_a_lock_for_its_artifacts(jar_set: JarSet) -> None:
    """Fails when a set's artifacts change and scripts/lock_jars.py was not run again."""
    files = locked.read(jar_set)
    assert files, f"no lock for {jar_set.key} in {jar_set.lock_file}: run scripts/lock_jars.py"
    assert len({file.name for file in files}) == len(files)


def test_a_locked_set_is_fetched_file_by_file_and_checked(tmp_path: Path) -> None:
    said: list[str] = []
    with repository() as repo:
        jars = resolve(KAFKA_JARS, tmp_path, java=JAVA, repository=repo.url, progress=said.append)
    files = locked.read(KAFKA_JARS)
    assert files is not None
    assert sorted(jar.name for jar in jars) == sorted(file.name for file in files)
    assert repo.requests == len(files)
    for jar in jars:
        assert jar.read_bytes() == (JARS_DIR / KAFKA_JARS.folder / jar.name).read_bytes()
    assert f"({len(files)} files, " in said[0]
    assert said[0].endswith("(once)")
    assert said[-1].startswith(f"fetched {KAFKA_JARS.title}: {len(files)} jars")
    # Later runs read the folder and ask the repository nothing.
    with repository() as again:
        assert resolve(KAFKA_JARS, tmp_path, java=JAVA, repository=again.url) == jars
    assert again.requests == 0


def test_a_slow_download_says_how_far_it_is(tmp_path: Path) -> None:
    said: list[str] = []
    with repository(bytes_per_s=2_000_000) as repo:
        resolve(kafka_connector(), tmp_path, java=JAVA, repository=repo.url, progress=said.append)
    title = kafka_connector().title
    progress = [line for line in said if line.startswith(f"  {title}: ")]
    assert progress, said
    assert " of 4 files, " in progress[0]
    assert " of 9.9 MB (" in progress[0]


def test_a_file_that_fails_its_checksum_fails_the_fetch_and_installs_nothing(
    tmp_path: Path,
) -> None:
    with (
        repository(overrides={"kafka-clients-4.1.2.jar": b"PK not the jar"}) as repo,
        pytest.raises(JarsUnavailableError) as failed,
    ):
        resolve(KAFKA_JARS, tmp_path, java=JAVA, repository=repo.url)
    message = str(failed.value)
    assert message.startswith(f"cannot download {KAFKA_JARS.title} from {repo.url}: ")
    assert "org/apache/kafka/kafka-clients/4.1.2/kafka-clients-4.1.2.jar: 14 bytes" in message
    assert "SHA-1" in message
    assert repo.requests >= 3  # tried again before failing
    assert not (tmp_path / KAFKA_JARS.folder).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{KAFKA_JARS.folder}-")] == []


def test_a_file_the_repository_does_not_have_is_named(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    jar_set = replace(kafka_connector(), folder="missing", lock=lock)
    path = "org/example/missing/1.0/missing-1.0.jar"
    lock.write_text(f"# key: {jar_set.key}\n{path} {hashlib.sha1(b'').hexdigest()} 0\n")
    with repository() as repo, pytest.raises(JarsUnavailableError) as failed:
        resolve(jar_set, tmp_path / "jars", java=JAVA, repository=repo.url)
    assert str(failed.value).endswith(f"{repo.url}{path}: not found (404)")
    assert repo.requests == 1  # a 404 is not tried again


def test_a_lock_for_other_artifacts_is_ignored_and_ivy_resolves_the_set(tmp_path: Path) -> None:
    pool = Artifact("org.apache.commons", "commons-pool2", "2.13.1")
    lock = tmp_path / "lock.txt"
    lock.write_text(f"# key: {pool}0\nwhatever/x.jar 0 0\n")  # written for another version
    jar_set = JarSet(folder="pool", title="commons-pool2", artifacts=(pool,), lock=lock)
    assert locked.read(jar_set) is None
    jars = resolve(jar_set, tmp_path / "jars", java=JAVA, repository=MAVEN_CENTRAL)
    assert [jar.name for jar in jars] == ["commons-pool2-2.13.1.jar"]
    assert (tmp_path / "jars" / "ivy" / "cache").is_dir()  # Ivy's, not the lock's, fetch
