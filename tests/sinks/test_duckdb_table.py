"""The warehouse's writers in one process take turns, whichever part of the code they are.

In ``clickstream up`` the jobs of one process write the same DuckDB file from their query
threads. DuckDB's Python client fails when one thread opens or closes a connection to the file
while another is registering an Arrow table on its own (``Table Function with name
python_arrow_scan does not exist``: a jobs process died of it once in ``up``, when the songs
view was made without waiting its turn), and two connections changing the catalog at once
conflict (``Catalog write-write conflict``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from clickstream.jobs.songs import RankingView
from clickstream.settings import load_settings
from clickstream.sinks.duckdb_table import DuckDBTable, connect
from clickstream.sinks.join_tables import AGGREGATES, COUNT, USER, JoinTables

SECONDS = 8.0
"""How long the writers run together: without turns, the error shows within 1-3 s here."""
MIN_ROUNDS = 10
"""Rounds every writer runs at least, however loaded the machine."""


def run_together(*loops: Callable[[int], None]) -> tuple[list[int], list[str]]:
    """Run the loops at once in threads, each again and again for at least SECONDS and until
    every loop ran more than MIN_ROUNDS times (a loaded machine runs fewer rounds a second; at
    most a minute more); how many rounds each ran, and the errors they raised."""
    errors: list[str] = []
    rounds = [0] * len(loops)
    started: list[float] = []
    start = threading.Barrier(len(loops), action=lambda: started.append(time.monotonic()))

    def done() -> bool:
        elapsed = time.monotonic() - started[0]
        enough = elapsed >= SECONDS and min(rounds) > MIN_ROUNDS
        return bool(errors) or enough or elapsed > SECONDS + 60

    def run(n: int, loop: Callable[[int], None]) -> None:
        start.wait()
        while not done():
            try:
                loop(rounds[n])
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            rounds[n] += 1

    threads = [threading.Thread(target=run, args=(n, loop)) for n, loop in enumerate(loops)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return rounds, errors


def test_upserts_joins_and_the_songs_view_write_one_file_from_threads(tmp_path: Path) -> None:
    settings = load_settings(environ={"CLICKSTREAM_DATA_DIR": str(tmp_path)})
    path = settings.duckdb_path
    counts = DuckDBTable(path, "window_counts", "k")
    joins = JoinTables(path, query="q", checkpoint_id=lambda: "cp", on_change=lambda _: None)

    def view(_: int) -> None:
        RankingView(settings)(1)  # a view made anew each time, as after a restart

    def users(i: int) -> None:
        uid = f"u{i % 7}"
        joins.write(
            pa.Table.from_pylist(
                [
                    {"kind": COUNT, "user_id": uid, "event": "click", "count": 1},
                    {"kind": USER, "user_id": uid, "name": f"N {i}", "email": f"{uid}@x.org",
                     "time": i, "partition": 0, "offset": i},
                ],
                schema=AGGREGATES,
            ),
            i,
        )  # fmt: skip

    def count(i: int, metric: str = "m") -> None:
        counts.write(
            pa.table(
                {
                    "k": [f"{metric}{i}"],
                    "metric": [metric],
                    "key": ["a/b"],
                    "window_start": [i],
                    "window_end": [i + 1],
                    "count": [i],
                }
            ),
            i,
        )

    count(0, "songs.minute")  # the view is on the counts table, made by the first counts
    rounds, errors = run_together(count, users, view, view)
    assert errors == []
    assert min(rounds) > MIN_ROUNDS
    with connect(path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM window_counts").fetchone() == (rounds[0] + 1,)
        assert con.execute("SELECT count(*) FROM join_users").fetchone() == (7,)
        assert con.execute("SELECT count FROM event_type_counts").fetchone() == (rounds[1],)
        assert con.execute("SELECT count(*) FROM top_songs").fetchone() == (1,)


def test_a_table_of_an_older_version_gets_the_columns_added_since(tmp_path: Path) -> None:
    """Sessions written by a version without ``bot``: the next batch adds the column (null in
    the rows before), whatever order the columns come in."""
    import pyarrow as pa

    from clickstream.sinks.duckdb_table import DuckDBTable, connect

    table = DuckDBTable(tmp_path / "w.duckdb", "sessions", key="session_key")
    table.write_table(pa.table({"session_key": ["a"], "pageviews": [2]}), 0)
    table.write_table(pa.table({"bot": [True], "pageviews": [1], "session_key": ["b"]}), 1)
    table.write_table(pa.table({"session_key": ["a"], "pageviews": [3], "bot": [False]}), 2)
    with connect(tmp_path / "w.duckdb", read_only=True) as con:
        rows = con.execute("SELECT session_key, pageviews, bot FROM sessions ORDER BY 1").fetchall()
    assert rows == [("a", 3, False), ("b", 1, True)]
