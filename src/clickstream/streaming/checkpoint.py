"""The one module that knows where checkpoints are and how Spark lays them out.

``spark.checkpoint_dir`` is a local folder (default ``<data_dir>/checkpoints``) or a URL of any
filesystem Spark can write to (``hdfs://``, ``s3a://``, ``gs://``, ``file://``). Each query of
each job has its own location, ``<checkpoint_dir>/<job>/<query>``, holding Spark's checkpoint
(``offsets/<batch>``, ``commits/<batch>``, ``state/`` for stateful queries) and, for the count
queries, the open windows' tally (``tally/``) beside it, on the same filesystem.

Files are read and written through a :class:`Store`: plain files for a local folder, Spark's
own Hadoop ``FileSystem`` (through py4j, with the session's Hadoop configuration: the same
credentials and connectors as Spark's checkpoint) for a URL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from clickstream.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from clickstream.settings import Settings

Key = tuple[str, int]
"""(topic, partition)."""

TALLY = "tally"
COMMITS = "commits"
OFFSETS = "offsets"
STATE = "state"


def is_url(location: str | Path) -> bool:
    """True for ``scheme://...`` (a drive letter or a plain path is local)."""
    text = str(location)
    scheme, sep, _ = text.partition("://")
    return bool(sep) and len(scheme) > 1 and scheme.replace("+", "").isalnum()


def root(settings: Settings) -> str:
    """The checkpoint directory: a local path or a URL."""
    configured = settings.spark.checkpoint_dir
    if configured:
        return configured if is_url(configured) else str(Path(configured).expanduser())
    return str(settings.data_dir / "checkpoints")


def local_root(settings: Settings) -> Path | None:
    """The checkpoint directory when it is a local folder (``file://`` URLs included)."""
    location = root(settings)
    if not is_url(location):
        return Path(location)
    if location.startswith("file://"):
        return Path(location.removeprefix("file://") or "/")
    return None


def query_location(settings: Settings, job: str, query: str) -> str:
    """Where query ``query`` of job ``job`` keeps its checkpoint (Spark's
    ``checkpointLocation``)."""
    return join(root(settings), job, query)


def join(location: str, *parts: str) -> str:
    if is_url(location):
        return "/".join([location.rstrip("/"), *parts])
    return str(Path(location, *parts))


class Store(Protocol):
    """Files under one location: names are relative, with ``/``."""

    location: str

    def read(self, name: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        ...

    def write(self, name: str, data: bytes) -> None:
        """Replace the file at once (a reader sees the old or the new content)."""
        ...

    def delete(self, name: str) -> None: ...

    def list(self, folder: str) -> list[str]:
        """The names of the files in ``folder`` (empty when there is none)."""
        ...

    def exists(self, name: str) -> bool: ...


class LocalStore:
    def __init__(self, location: str | Path) -> None:
        self.path = Path(location)
        self.location = str(location)

    def read(self, name: str) -> bytes | None:
        try:
            return (self.path / name).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.tmp")
        temp.write_bytes(data)
        os.replace(temp, path)

    def delete(self, name: str) -> None:
        (self.path / name).unlink(missing_ok=True)

    def list(self, folder: str) -> list[str]:
        directory = self.path / folder
        if not directory.is_dir():
            return []
        return [p.name for p in directory.iterdir() if p.is_file()]

    def exists(self, name: str) -> bool:
        return (self.path / name).exists()


class HadoopStore:
    """Files through Spark's Hadoop ``FileSystem`` on the driver (any scheme Spark reads)."""

    def __init__(self, spark: SparkSession, location: str) -> None:
        jvm: Any = spark.sparkContext._jvm
        self._jvm = jvm
        self._base = jvm.org.apache.hadoop.fs.Path(location)
        self._fs = self._base.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        self.location = location

    def _path(self, name: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(self._base, name) if name else self._base

    def read(self, name: str) -> bytes | None:
        path = self._path(name)
        if not self._fs.exists(path):
            return None
        stream = self._fs.open(path)
        try:
            length = self._fs.getFileStatus(path).getLen()
            data = self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream, length)
        finally:
            stream.close()
        return bytes(data)

    def write(self, name: str, data: bytes) -> None:
        # Written aside, then renamed over the old file (atomic on HDFS and local files; an
        # object store's rename is a copy, so a crash leaves the old or the new file whole).
        path = self._path(name)
        temp = self._path(f"{name.rpartition('/')[0]}/.{name.rpartition('/')[2]}.tmp".lstrip("/"))
        out = self._fs.create(temp, True)
        try:
            out.write(bytearray(data))
        finally:
            out.close()
        if self._fs.exists(path):
            self._fs.delete(path, False)
        if not self._fs.rename(temp, path):
            raise OSError(f"cannot rename {temp} to {path}")

    def delete(self, name: str) -> None:
        self._fs.delete(self._path(name), False)

    def list(self, folder: str) -> list[str]:
        path = self._path(folder)
        if not self._fs.exists(path):
            return []
        return [s.getPath().getName() for s in self._fs.listStatus(path) if s.isFile()]

    def exists(self, name: str) -> bool:
        return bool(self._fs.exists(self._path(name)))


def store(location: str, spark: SparkSession | None = None) -> Store:
    """The files under ``location``: local ones directly, a URL's through ``spark``."""
    if not is_url(location):
        return LocalStore(location)
    if spark is None:
        raise ConfigError(f"the checkpoint {location} is a URL: it is read through Spark")
    return HadoopStore(spark, location)


def batch_numbers(names: list[str]) -> list[int]:
    return [int(n) for n in names if n.isdigit()]


def committed_batches(query: Store) -> list[int]:
    """The batches Spark committed in a query's checkpoint."""
    return sorted(batch_numbers(query.list(COMMITS)))


def query_id(query: Store) -> str:
    """The id Spark gave the query when it made the checkpoint (``metadata``); empty before
    its first batch. Batch ids count from 0 again in a new checkpoint, so a writer that keys
    its work by batch id keys it by this too."""
    raw = query.read("metadata")
    try:
        return str(json.loads(raw or b"")["id"])
    except (ValueError, KeyError, TypeError):
        return ""


def has_state(query: Store) -> bool:
    """True when Spark keeps state in the checkpoint (a stateful query wrote it)."""
    return query.exists(STATE)


def state_operator(query: Store) -> str | None:
    """The name of the first stateful operator whose state the checkpoint keeps, from Spark's
    state metadata (``dedupeWithinWatermark``, ``stateStoreSave``, ...): ``None`` without
    state, ``""`` when the metadata says nothing readable (Spark before 4 wrote none)."""
    if not has_state(query):
        return None
    raw = query.read(f"{STATE}/0/_metadata/metadata") or b""
    for line in raw.decode(errors="replace").splitlines():
        try:
            return str(json.loads(line)["operatorInfo"]["operatorName"])
        except (ValueError, KeyError, TypeError):
            continue
    return ""


def state_schema(query: Store) -> str | None:
    """The text of the schema Spark wrote for the first stateful operator's state (its key and
    value fields, JSON among binary framing): ``None`` without state, ``""`` when no schema
    file is found where Spark 4 writes one."""
    if not has_state(query):
        return None
    raw = query.read(f"{STATE}/0/0/_metadata/schema")
    if raw is None:  # schema version 3 (a newer state store format): one file per version
        folder = f"{STATE}/0/_stateSchema/default"
        names = sorted(query.list(folder))
        raw = query.read(f"{folder}/{names[-1]}") if names else None
    return (raw or b"").decode(errors="replace")


def clear_unfinished_writes(query: Store) -> list[str]:
    """Delete the temporary files a killed process left in a query's offset and commit logs
    (Spark writes ``.<batch>.<uuid>.tmp`` and renames it): Spark 4.2 refuses to start a query
    whose offset log holds only such a file (``STATE_STORE_CHECKPOINT_LOCATION_NOT_EMPTY ...
    should be empty on batch 0``), which a SIGKILL during its first batch leaves. Returns what
    it deleted. Only while no query runs on the checkpoint (the jobs process holds its lock)."""
    gone = []
    for folder in ("offsets", "commits"):
        for name in query.list(folder):
            if name.startswith(".") and (name.endswith(".tmp") or name.endswith(".tmp.crc")):
                query.delete(f"{folder}/{name}")
                gone.append(f"{folder}/{name}")
    return gone


def tally_store(query: Store, name: str = TALLY) -> Store:
    """A tally's files (``tally/``, or ``name`` for a query keeping several), beside Spark's
    checkpoint on the same filesystem."""
    if isinstance(query, HadoopStore):
        sub = HadoopStore.__new__(HadoopStore)
        sub._jvm, sub._fs = query._jvm, query._fs
        sub._base = query._path(name)
        sub.location = join(query.location, name)
        return sub
    return LocalStore(join(query.location, name))


def local_queries(checkpoints: Path) -> Iterator[tuple[str, str, Path]]:
    """(job, query, folder) of every query checkpoint in a local checkpoint directory."""
    for offsets_dir in sorted(checkpoints.glob(f"*/*/{OFFSETS}")):
        folder = offsets_dir.parent
        yield folder.parent.name, folder.name, folder


def _parse_offsets(text: str) -> dict[Key, int]:
    """The Kafka offsets of an offset-log entry: a version, metadata, then a line per source."""
    offsets: dict[Key, int] = {}
    for line in text.splitlines()[2:]:
        try:
            nested = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(nested, dict):
            for topic, parts in nested.items():
                for partition, offset in parts.items():
                    offsets[topic, int(partition)] = int(offset)
    return offsets


def committed_offsets(folder: Path) -> tuple[int, dict[Key, int]] | None:
    """(committed batches, the Kafka offsets the last committed batch ended at) of a local
    query checkpoint, or None when it has committed nothing."""
    commits = committed_batches(LocalStore(folder))
    if not commits:
        return None
    last = commits[-1]
    return last + 1, _parse_offsets((folder / OFFSETS / str(last)).read_text())


def batch_records(query: Store, batch_id: int) -> int | None:
    """How many Kafka records micro-batch ``batch_id`` reads, at most (transaction markers
    take offsets too), from the offsets Spark logs before it runs a batch: known without
    reading the batch. None when the log cannot say: the first batch of a checkpoint (it
    starts at offsets the log does not hold), or a partition the previous batch did not have."""
    if batch_id <= 0:
        return None
    raw_end, raw_start = (
        query.read(f"{OFFSETS}/{batch_id}"),
        query.read(f"{OFFSETS}/{batch_id - 1}"),
    )
    if raw_end is None or raw_start is None:
        return None
    try:
        end, start = _parse_offsets(raw_end.decode()), _parse_offsets(raw_start.decode())
    except (ValueError, TypeError, AttributeError):  # a source whose offsets are not Kafka's
        return None
    if not end or not end.keys() <= start.keys():
        return None
    return sum(max(0, end[k] - start[k]) for k in end)


def last_commit_mtime(folder: Path) -> float | None:
    commits = [p for p in (folder / COMMITS).glob("[0-9]*") if p.name.isdigit()]
    return max((p.stat().st_mtime for p in commits), default=None)


def has_files(folder: Path) -> bool:
    return folder.is_dir() and any(path.is_file() for path in folder.rglob("*"))
