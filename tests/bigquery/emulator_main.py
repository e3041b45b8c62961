"""Run bqemulator (the BigQuery emulator from PyPI) offline, for the tests.

It wants two DuckDB extensions that it downloads at start, which this machine (and CI) cannot:

* ``spatial``, for GEOGRAPHY, which clickstream does not use: not loaded;
* ``avro``, to read Avro load files: every Avro file goes through the emulator's own fastavro
  reader instead (its fallback for decimal columns), one file of a wildcard URI at a time (the
  DuckDB reader expands wildcards itself), so load jobs of Avro files still work.

Arguments are those of ``bqemulator start``.
"""

from __future__ import annotations

import glob
import sys
from typing import Any

from bqemulator.jobs import executor
from bqemulator.storage import engine


def main() -> None:
    engine.DuckDBEngine._load_spatial = lambda self: None  # type: ignore[method-assign]

    def load_avro(path: str, target_ref: str, ctx: Any) -> None:
        for one in sorted(glob.glob(path)) or [path]:
            executor._insert_via_arrow_view(
                arrow_table=executor.read_avro_to_arrow(one),
                view_name="_bqemu_avro_load",
                target_ref=target_ref,
                ctx=ctx,
            )

    executor._LOAD_FORMAT_HANDLERS["AVRO"] = load_avro
    from bqemulator.cli import main as emulator

    sys.argv = ["bqemulator", "start", *sys.argv[1:]]
    emulator()


if __name__ == "__main__":
    main()
