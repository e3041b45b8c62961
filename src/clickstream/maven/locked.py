"""Sets fetched from their lock file: each jar's path in the repository, SHA-1 and size, as
Apache Ivy resolved them when ``scripts/lock_jars.py`` wrote the file.

The files download several at a time on daemon threads (a stop in the main thread, or a killed
process, leaves nothing running), each checked against its size and SHA-1 before the folder is
made the set's. A lock file whose ``# key:`` line is not the set's artifacts (the set changed,
the lock was not written again) is ignored, and Ivy resolves the set instead.
"""

from __future__ import annotations

import hashlib
import queue
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx

from clickstream.maven import Clock, JarSet, JarsUnavailableError, Progress, install

THREADS = 6
"""Files downloading at once."""
ATTEMPTS = 3
"""Tries of one file before the fetch fails (a dropped connection, a truncated body)."""
CHUNK = 1 << 16


@dataclass(frozen=True)
class LockedFile:
    path: str
    """Its path in a Maven repository: ``org/apache/kafka/kafka_2.13/4.1.2/kafka_2.13-4.1.2.jar``"""
    sha1: str
    size: int

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def read(jar_set: JarSet) -> list[LockedFile] | None:
    """The files of ``jar_set``'s lock file; None without one, or with one for other artifacts."""
    try:
        text = jar_set.lock_file.read_text()
    except OSError:
        return None
    key = None
    files = []
    for line in text.splitlines():
        if line.startswith("# key: "):
            key = line.removeprefix("# key: ").strip()
        elif line.strip() and not line.startswith("#"):
            path, sha1, size = line.split()
            files.append(LockedFile(path, sha1, int(size)))
    return files if key == jar_set.key and files else None


def lock_text(jar_set: JarSet, tree: Path) -> str:
    """The lock file of ``jar_set`` from the jars Ivy retrieved into ``tree`` by
    ``ivy.TREE`` (``organisation/module/revision/file``)."""
    lines = [
        f"# {jar_set.title}: the jars Apache Ivy resolved (written by scripts/lock_jars.py)",
        f"# key: {jar_set.key}",
        "# path in the repository, SHA-1, bytes",
    ]
    for jar in sorted(tree.rglob("*.jar")):
        group, module, revision, name = jar.relative_to(tree).parts
        path = f"{group.replace('.', '/')}/{module}/{revision}/{name}"
        sha1 = hashlib.sha1(jar.read_bytes(), usedforsecurity=False).hexdigest()
        lines.append(f"{path} {sha1} {jar.stat().st_size}")
    return "\n".join(lines) + "\n"


def download(
    jar_set: JarSet,
    files: list[LockedFile],
    jars_dir: Path,
    repository: str,
    say: Progress,
    timeout_s: float,
) -> None:
    """Download ``files`` into the set's folder of ``jars_dir`` (the caller holds its lock)."""
    total = sum(file.size for file in files)
    say(
        f"fetching {jar_set.title} ({len(files)} files, {total / 1e6:.1f} MB) from {repository} "
        f"into {jars_dir / jar_set.folder} (once)"
    )
    with tempfile.TemporaryDirectory(
        prefix=f".{jar_set.folder}-", dir=jars_dir, ignore_cleanup_errors=True
    ) as scratch:
        retrieved = Path(scratch) / "jars"
        retrieved.mkdir()
        fetch = _Fetch(files, repository, retrieved)
        clock = Clock()
        try:
            fetch.start()
            while not fetch.done.wait(0.25):
                if clock.due():
                    say(
                        f"  {jar_set.title}: {fetch.files_done} of {len(files)} files, "
                        f"{fetch.bytes_done / 1e6:.1f} of {total / 1e6:.1f} MB "
                        f"({clock.elapsed():.0f} s)"
                    )
                if clock.elapsed() > timeout_s:
                    fetch.fail(f"not done within {timeout_s:g} s")
        finally:
            fetch.stop.set()  # a stop (an exception here) ends the threads at their next chunk
        if fetch.error is not None:
            raise JarsUnavailableError(
                f"cannot download {jar_set.title} from {repository}: {fetch.error}"
            )
        install(jar_set, retrieved, jars_dir)


class _Fetch:
    """``THREADS`` daemon threads taking files from one queue."""

    def __init__(self, files: list[LockedFile], repository: str, into: Path) -> None:
        self.root = repository if repository.endswith("/") else repository + "/"
        self.into = into
        self.todo: queue.SimpleQueue[LockedFile] = queue.SimpleQueue()
        for file in files:
            self.todo.put(file)
        self.files = len(files)
        self.files_done = 0
        self.bytes_done = 0
        self.error: str | None = None
        self.stop = threading.Event()
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._client = httpx.Client(
            timeout=httpx.Timeout(30.0, connect=10.0),
            follow_redirects=True,
            limits=httpx.Limits(max_connections=THREADS),
        )

    def start(self) -> None:
        for n in range(min(THREADS, self.files)):
            threading.Thread(target=self._work, name=f"jars-{n}", daemon=True).start()

    def fail(self, reason: str) -> None:
        with self._lock:
            if self.error is None:
                self.error = reason
        self.stop.set()
        self.done.set()

    def _work(self) -> None:
        try:
            self._take_files()
        except Exception as exc:  # a bug must end the fetch, not leave it waiting for its timeout
            self.fail(f"{type(exc).__name__}: {exc}")

    def _take_files(self) -> None:
        while not self.stop.is_set():
            try:
                file = self.todo.get_nowait()
            except queue.Empty:
                return
            url = self.root + file.path
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    self._get(file, url)
                    break
                except _Stopping:
                    return
                except (httpx.HTTPError, OSError, _BadFile) as exc:
                    if attempt == ATTEMPTS or isinstance(exc, _NotThere):
                        self.fail(f"{url}: {exc}")
                        return
                    if self.stop.wait(0.5 * attempt):
                        return
            with self._lock:
                self.files_done += 1
                if self.files_done == self.files:
                    self._client.close()
                    self.done.set()

    def _get(self, file: LockedFile, url: str) -> None:
        part = self.into / f"{file.name}.part"
        digest = hashlib.sha1(usedforsecurity=False)
        got = 0
        try:
            with self._client.stream("GET", url) as answer, part.open("wb") as out:
                if answer.status_code == 404:
                    raise _NotThere("not found (404)")
                if answer.status_code != 200:
                    raise _BadFile(f"HTTP {answer.status_code}")
                for chunk in answer.iter_bytes(CHUNK):
                    if self.stop.is_set():
                        raise _Stopping
                    out.write(chunk)
                    digest.update(chunk)
                    got += len(chunk)
                    with self._lock:
                        self.bytes_done += len(chunk)
            if got != file.size or digest.hexdigest() != file.sha1:
                raise _BadFile(
                    f"{got} bytes with SHA-1 {digest.hexdigest()}, the lock file says "
                    f"{file.size} bytes with SHA-1 {file.sha1}"
                )
            part.rename(self.into / file.name)
        except BaseException:
            with self._lock:
                self.bytes_done -= got
            raise


class _Stopping(Exception):
    """The fetch was stopped (or failed elsewhere) while this file came."""


class _BadFile(Exception):
    """An answer that is not the locked file: another status, size or checksum."""


class _NotThere(_BadFile):
    """The repository has no such file: trying again will not change that."""
