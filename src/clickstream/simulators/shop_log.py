"""The shopping log (the seed's ``user_log.csv``): its rows, reading and writing the file.

* :class:`ShopRow` is one row, typed as :class:`~clickstream.events.shop.ShopEvent` types it,
  without the event time (the replayer stamps it).
* :func:`read_shop_csv` reads a log: a header row naming the columns of
  :data:`~clickstream.events.shop.COLUMNS` (any order and case), then one row per line. It
  yields ``(line, row)``: a :class:`ShopRow`, or a :class:`RowError` naming the line (1-based,
  physical: the header is line 1), the column and the value. :func:`write_shop_csv` writes one.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple

import msgspec.inspect as mi

from clickstream.errors import TerminalError
from clickstream.events.shop import COLUMNS, ShopEvent

MAX_ID = 2**63 - 1  # a Spark bigint
_NULL = "NULL"


class ShopRow(NamedTuple):
    """One row of the log, in the log's column order (:data:`~clickstream.events.shop.COLUMNS`)."""

    user_id: int
    item_id: int | None
    cat_id: int | None
    merchant_id: int | None
    brand_id: int | None
    month: int | None
    day: int | None
    action: int
    age_range: int | None
    gender: int | None
    province: str | None

    def event(self, timestamp: int) -> ShopEvent:
        """The event of this row at ``timestamp`` (epoch ms)."""
        return ShopEvent(
            user_id=self.user_id,
            item_id=self.item_id,
            cat_id=self.cat_id,
            merchant_id=self.merchant_id,
            brand_id=self.brand_id,
            month=self.month,
            day=self.day,
            action=self.action,
            age_range=self.age_range,
            gender=self.gender,
            province=self.province,
            timestamp=timestamp,
        )


class ShopLogError(TerminalError):
    """The file cannot be read as a shop log: missing, unreadable, or a header without a column."""


@dataclass(frozen=True, slots=True)
class RowError:
    """A malformed row: where (``line``, ``column``), what was there (``value``) and why."""

    line: int
    message: str
    column: str | None = None
    value: str | None = None

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


Numbered = tuple[int, ShopRow | RowError]
"""A row of a file with its line number, as :func:`read_shop_csv` yields it."""


# -- reading -------------------------------------------------------------------------------------


class _Column(NamedTuple):
    name: str
    nullable: bool
    low: int
    high: int
    text: bool

    def problem(self, raw: str) -> str:
        got = repr(raw if len(raw) <= 40 else raw[:37] + "...")
        if self.text:
            return f"{self.name} must not be empty"
        if self.high - self.low <= 3:
            values = [str(v) for v in range(self.low, self.high + 1)]
            return f"{self.name} must be {', '.join(values[:-1])} or {values[-1]} (got {got})"
        if self.high == MAX_ID:
            return f"{self.name} must be a non-negative integer below 2^63 (got {got})"
        return f"{self.name} must be an integer from {self.low} to {self.high} (got {got})"


def _columns() -> tuple[_Column, ...]:
    """Each column's type and bounds, read off :class:`ShopEvent` (the one contract)."""
    info = mi.type_info(ShopEvent)
    assert isinstance(info, mi.StructType)
    fields = {field.name: field.type for field in info.fields}
    columns = []
    for name in COLUMNS:
        kind, nullable = fields[name], False
        if isinstance(kind, mi.UnionType):
            nullable = any(isinstance(t, mi.NoneType) for t in kind.types)
            (kind,) = [t for t in kind.types if not isinstance(t, mi.NoneType)]
        if isinstance(kind, mi.StrType):
            columns.append(_Column(name, nullable, 0, 0, text=True))
            continue
        assert isinstance(kind, mi.IntType), f"{name}: {kind}"
        low = kind.ge if kind.ge is not None else 0
        high = min(kind.le, MAX_ID) if kind.le is not None else MAX_ID
        columns.append(_Column(name, nullable, low, high, text=False))
    return tuple(columns)


_COLUMNS = _columns()


class ShopCsv:
    """An open log: iterate it for ``(line, ShopRow | RowError)``; closed once exhausted.

    The header is read and checked on opening. Cells are stripped; an empty cell (or ``NULL``)
    is ``None`` where the contract allows it; integers are plain digits (``08`` is 8).
    Blank lines are skipped. Files ending in ``.gz`` are read through gzip.
    """

    def __init__(self, source: str | Path | IO[bytes]) -> None:
        if isinstance(source, str | Path):
            self.name = str(source)
            path = Path(source)
            try:
                # closed by close(), once the rows are read
                self._file: IO[bytes] | gzip.GzipFile = (
                    gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")  # noqa: SIM115
                )
            except OSError as exc:
                raise ShopLogError(f"cannot read {path}: {exc.strerror or exc}") from None
        else:
            self._file, self.name = source, str(getattr(source, "name", "<stream>"))
        self._bad_lines: set[int] = set()
        self._reader = csv.reader(self._text())
        try:
            self._plan, self.width = self._header()
        except BaseException:
            self.close()
            raise
        self._rows = self._records()

    def __iter__(self) -> Iterator[Numbered]:
        return self

    def __next__(self) -> Numbered:
        return next(self._rows)

    def __enter__(self) -> ShopCsv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def _text(self) -> Iterator[str]:
        """The file's lines as text; a line that is not UTF-8 is noted, its row reported."""
        number = 0
        try:
            for number, raw in enumerate(self._file, 1):
                line = raw[3:] if number == 1 and raw.startswith(codecs.BOM_UTF8) else raw
                try:
                    yield line.decode("utf-8")
                except UnicodeDecodeError:
                    self._bad_lines.add(number)
                    yield line.decode("utf-8", "replace")
        except (OSError, EOFError) as exc:
            raise ShopLogError(f"cannot read {self.name} after line {number}: {exc}") from None

    def _header(self) -> tuple[list[tuple[_Column, int]], int]:
        for cells in self._reader:
            if cells:
                break
        else:
            raise ShopLogError(f"{self.name} is empty: expected a header row {','.join(COLUMNS)}")
        line = self._reader.line_num
        names = [cell.strip().lower() for cell in cells]
        twice = sorted({name for name in names if name in COLUMNS and names.count(name) > 1})
        if twice:
            raise ShopLogError(f"{self.name}: the header (line {line}) repeats {', '.join(twice)}")
        missing = [name for name in COLUMNS if name not in names]
        if missing:
            what = "column " + missing[0] if len(missing) == 1 else "columns " + ", ".join(missing)
            shown = ",".join(cells)
            shown = shown if len(shown) <= 120 else shown[:117] + "..."
            raise ShopLogError(
                f"{self.name}: the header (line {line}) has no {what} (got {shown!r}; "
                f"expected the columns {','.join(COLUMNS)} in any order)"
            )
        return [(column, names.index(column.name)) for column in _COLUMNS], len(cells)

    def _records(self) -> Iterator[Numbered]:
        reader, end = self._reader, self._reader.line_num
        try:
            while True:
                start = end + 1
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    end = reader.line_num
                    yield start, RowError(start, f"is not valid CSV ({exc})")
                    continue
                end = reader.line_num
                if not cells:
                    continue
                if self._bad_lines and min(self._bad_lines) <= end:
                    self._bad_lines = {n for n in self._bad_lines if n > end}
                    yield start, RowError(start, "is not valid UTF-8 text")
                    continue
                yield start, self._parse(cells, start)
        finally:
            self.close()

    def _parse(self, cells: list[str], line: int) -> ShopRow | RowError:
        if len(cells) != self.width:
            return RowError(line, f"expected {self.width} columns, got {len(cells)}")
        values: list[int | str | None] = []
        for column, index in self._plan:
            raw = cells[index].strip()
            if not raw or raw.upper() == _NULL:
                if column.nullable:
                    values.append(None)
                    continue
            elif column.text:
                values.append(raw)
                continue
            elif raw.isascii() and raw.isdigit():
                number = int(raw)
                if column.low <= number <= column.high:
                    values.append(number)
                    continue
            return RowError(line, column.problem(raw), column.name, raw)
        return ShopRow(*values)  # type: ignore[arg-type]  # typed by _COLUMNS, per column


def read_shop_csv(source: str | Path | IO[bytes]) -> ShopCsv:
    """Open a log (a path, ``.gz`` too, or a binary file) and check its header; raises
    :class:`ShopLogError` if it cannot be read or its header lacks a column. Iterate the result
    for ``(line, ShopRow | RowError)``."""
    return ShopCsv(source)


def count_rows(path: str | Path, max_bytes: int = 512 * 2**20) -> int | None:
    """About how many rows a log holds (its lines but the header), or ``None`` when it is
    compressed, not a file or over ``max_bytes`` (counting would take too long)."""
    path = Path(path)
    try:
        if not path.is_file() or path.suffix == ".gz" or path.stat().st_size > max_bytes:
            return None
        lines, last = 0, b"\n"
        with path.open("rb") as file:
            while block := file.read(2**20):
                lines, last = lines + block.count(b"\n"), block[-1:]
    except OSError:
        return None
    return max(0, lines + (last != b"\n") - 1)


# -- writing -------------------------------------------------------------------------------------


def write_shop_csv(path: str | Path, rows: Iterable[ShopRow], *, overwrite: bool = False) -> int:
    """Write ``rows`` as a log in the seed's format (header, ``08`` for August, empty cells for
    ``None``); ``.gz`` compresses. The file appears whole or not at all. Returns the row count."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ShopLogError(f"{path} already exists")
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    written = 0
    try:
        with _open_text(temp, gzipped=path.suffix == ".gz") as file:
            writer = csv.writer(file, lineterminator="\n")
            writer.writerow(COLUMNS)
            for row in rows:
                writer.writerow(_cells(row))
                written += 1
        os.replace(temp, path)
    except OSError as exc:
        raise ShopLogError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        temp.unlink(missing_ok=True)
    return written


def _open_text(path: Path, gzipped: bool) -> IO[str]:
    if gzipped:
        return gzip.open(path, "wt", newline="", encoding="utf-8")
    return path.open("w", newline="", encoding="utf-8")


def _cells(row: ShopRow) -> list[str]:
    cells = ["" if value is None else str(value) for value in row]
    for index in (5, 6):  # month, day: two digits, as in the log
        value = row[index]
        if isinstance(value, int):
            cells[index] = f"{value:02d}"
    return cells
