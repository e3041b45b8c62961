"""The rows of the shopping log (the seed's ``user_log.csv``): their type, the file, made-up ones.

* :class:`ShopRow` is one row, typed as :class:`~clickstream.events.shop.ShopEvent` types it,
  without the event time (the replayer stamps it).
* :func:`read_shop_csv` reads a log: a header row naming the columns of
  :data:`~clickstream.events.shop.COLUMNS` (any order and case), then one row per line. It
  yields ``(line, row)``: a :class:`ShopRow`, or a :class:`RowError` naming the line (1-based,
  physical: the header is line 1), the column and the value. :func:`write_shop_csv` writes one.
* :func:`generate_shop_rows` makes an endless stream of rows shaped like the Tmall "Double 11"
  log:

  - **Shoppers come back.** Rows come from a few visits at a time, interleaved; a visit is one
    shopper browsing 2-25 items of 1-3 categories at one or two merchants per category. Half of
    the visits are by a new shopper, the rest by one seen before. A shopper keeps one gender,
    age range and province.
  - **Who.** Gender: ~62% female (0), ~26% male (1), the rest unknown (2) or empty (kept close
    to these shares even in a short stream). Age range 1-8 weighted towards 25-34 (3, 4); 0
    (unknown) or empty for ~15%. Province: one of the 34 provincial-level regions, by English
    name ("Zhejiang", "Inner Mongolia"), weighted towards the populous coastal ones.
  - **What.** Actions: ~87.5% clicks (0), ~1.2% add to cart (1), ~5.8% purchases (2), ~5.5%
    favourites (3). Popular categories are browsed far more than the long tail; a merchant
    sells mostly one brand, and ~3% of merchants have no brand (empty ``brand_id``).
  - **When.** ``month``/``day`` from May 11 to November 12, as in the log, ~15% of the rows on
    November 11.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import os
import random
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NamedTuple, TypeVar

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


# -- synthetic rows ------------------------------------------------------------------------------

PROVINCES: dict[str, int] = {  # province: weight (roughly online shoppers)
    "Guangdong": 120,
    "Zhejiang": 85,
    "Jiangsu": 80,
    "Shanghai": 55,
    "Beijing": 50,
    "Shandong": 50,
    "Fujian": 40,
    "Henan": 35,
    "Sichuan": 35,
    "Hubei": 30,
    "Hunan": 25,
    "Hebei": 25,
    "Anhui": 22,
    "Liaoning": 20,
    "Shaanxi": 18,
    "Chongqing": 16,
    "Jiangxi": 15,
    "Tianjin": 14,
    "Guangxi": 14,
    "Yunnan": 12,
    "Shanxi": 11,
    "Heilongjiang": 11,
    "Jilin": 9,
    "Inner Mongolia": 8,
    "Guizhou": 8,
    "Xinjiang": 6,
    "Gansu": 5,
    "Hainan": 4,
    "Ningxia": 2,
    "Qinghai": 2,
    "Tibet": 1,
    "Hong Kong": 3,
    "Macao": 1,
    "Taiwan": 2,
}
GENDER_WEIGHTS: dict[int | None, int] = {0: 62, 1: 26, 2: 8, None: 4}
ACTION_WEIGHTS: dict[int, int] = {0: 875, 1: 12, 2: 58, 3: 55}
AGE_WEIGHTS: dict[int | None, int] = {
    None: 4, 0: 8, 1: 1, 2: 12, 3: 27, 4: 21, 5: 12, 6: 10, 7: 3, 8: 2
}  # fmt: skip
DAYS: dict[int, range] = {  # month: its days in the log (May 11 to November 12)
    5: range(11, 32),
    6: range(1, 31),
    7: range(1, 32),
    8: range(1, 32),
    9: range(1, 31),
    10: range(1, 32),
    11: range(1, 13),
}
DOUBLE_11_SHARE = 0.15
MAX_USER_ID, MAX_ITEM_ID, MAX_CAT_ID = 424_170, 1_113_166, 1_671
MAX_MERCHANT_ID, MAX_BRAND_ID = 4_995, 8_477
NO_BRAND_SHARE = 0.03
NEW_SHOPPER_SHARE = 0.5
CONCURRENT_VISITS = 8
_POOL = 5_000
T = TypeVar("T")


@dataclass(slots=True, eq=False)
class _Shopper:
    user_id: int
    gender: int | None
    age_range: int | None
    province: str | None
    favourites: list[int] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class _Visit:
    shopper: _Shopper
    month: int
    day: int
    shelves: list[tuple[int, int]]  # (category, merchant)
    rows_left: int


class _Shop:
    """The catalogue (categories, merchants, brands, items), made up as it is browsed."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        popular = rng.sample(range(1, MAX_CAT_ID + 1), 400)
        self.categories = popular
        self.category_weights = [1.0 / (rank + 3) for rank in range(len(popular))]  # Zipf-like
        self.merchants: dict[int, list[int]] = {}  # category: its merchants
        self.brands: dict[int, list[int | None]] = {}  # merchant: its brands (mostly one)
        self.items: dict[tuple[int, int], list[int]] = {}  # (category, merchant): items

    def category(self) -> int:
        return self.rng.choices(self.categories, self.category_weights)[0]

    def merchant(self, category: int) -> int:
        rng = self.rng
        merchants = self.merchants.get(category)
        if merchants is None:
            count = rng.randint(3, 12)
            merchants = self.merchants[category] = rng.sample(range(1, MAX_MERCHANT_ID + 1), count)
        return merchants[min(int(rng.expovariate(0.5)), len(merchants) - 1)]  # a few lead

    def brand(self, merchant: int) -> int | None:
        rng = self.rng
        brands = self.brands.get(merchant)
        if brands is None:
            main = None if rng.random() < NO_BRAND_SHARE else rng.randint(1, MAX_BRAND_ID)
            other = (
                rng.randint(1, MAX_BRAND_ID) if main is not None and rng.random() < 0.2 else main
            )
            brands = self.brands[merchant] = [main] * 9 + [other]
        return rng.choice(brands)

    def item(self, category: int, merchant: int) -> int:
        rng = self.rng
        items = self.items.get((category, merchant))
        if items is None:
            count = rng.randint(3, 15)
            items = self.items[category, merchant] = [
                rng.randint(1, MAX_ITEM_ID) for _ in range(count)
            ]
        return rng.choice(items)


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.shop = _Shop(self.rng)
        self.known: deque[_Shopper] = deque(maxlen=_POOL)
        self.used: set[int] = set()
        self.visits: list[_Visit] = []
        self.provinces, self.province_weights = list(PROVINCES), list(PROVINCES.values())
        self.months = list(DAYS)
        self.month_weights = [len(days) for days in DAYS.values()]
        total = sum(GENDER_WEIGHTS.values())
        self.gender_share = {gender: weight / total for gender, weight in GENDER_WEIGHTS.items()}
        self.gender_rows = dict.fromkeys(GENDER_WEIGHTS, 0)
        self.row_count = 0

    def rows(self) -> Iterator[ShopRow]:
        rng, shop, visits = self.rng, self.shop, self.visits
        actions, action_weights = list(ACTION_WEIGHTS), list(ACTION_WEIGHTS.values())
        while True:
            while len(visits) < CONCURRENT_VISITS:
                visits.append(self.visit())
            index = rng.randrange(len(visits))
            visit = visits[index]
            category, merchant = rng.choice(visit.shelves)
            shopper = visit.shopper
            self.gender_rows[shopper.gender] += 1
            self.row_count += 1
            yield ShopRow(
                user_id=shopper.user_id,
                item_id=shop.item(category, merchant),
                cat_id=category,
                merchant_id=merchant,
                brand_id=shop.brand(merchant),
                month=visit.month,
                day=visit.day,
                action=rng.choices(actions, action_weights)[0],
                age_range=shopper.age_range,
                gender=shopper.gender,
                province=shopper.province,
            )
            visit.rows_left -= 1
            if visit.rows_left <= 0:
                visits[index] = visits[-1]
                visits.pop()

    def shopper(self) -> _Shopper:
        """A returning shopper, or (``NEW_SHOPPER_SHARE`` of the time) a new one."""
        rng = self.rng
        if self.known and rng.random() >= NEW_SHOPPER_SHARE:
            busy = {visit.shopper.user_id for visit in self.visits}
            for _ in range(4):  # one visit at a time per shopper
                known = rng.choice(self.known)
                if known.user_id not in busy:
                    return known
        if len(self.used) >= MAX_USER_ID // 2:  # endless runs: ids may come back after a while
            self.used.clear()
        user_id = rng.randint(1, MAX_USER_ID)
        while user_id in self.used:
            user_id = rng.randint(1, MAX_USER_ID)
        self.used.add(user_id)
        gender = self.gender()
        age_range = _pick(rng, AGE_WEIGHTS)
        province = None if rng.random() < 0.005 else _pick(rng, PROVINCES)
        shopper = _Shopper(user_id, gender, age_range, province)
        shopper.favourites = [self.shop.category() for _ in range(rng.randint(2, 5))]
        self.known.append(shopper)
        return shopper

    def gender(self) -> int | None:
        """Half of the time the gender furthest below its share of the rows so far: shoppers
        come back, so a few busy ones would otherwise skew the shares of a short stream."""
        if self.row_count == 0 or self.rng.random() < 0.5:
            return _pick(self.rng, GENDER_WEIGHTS)
        rows, share = self.row_count, self.gender_share
        return max(share, key=lambda gender: share[gender] - self.gender_rows[gender] / rows)

    def visit(self) -> _Visit:
        rng = self.rng
        shopper = self.shopper()
        if rng.random() < DOUBLE_11_SHARE:
            month, day = 11, 11
        else:
            month = rng.choices(self.months, self.month_weights)[0]
            day = rng.choice(DAYS[month])
        shelves = []
        for _ in range(rng.choice((1, 1, 2, 2, 3))):
            category = rng.choice(shopper.favourites) if rng.random() < 0.6 else None
            category = category or self.shop.category()
            for _ in range(rng.choice((1, 1, 1, 2))):
                shelves.append((category, self.shop.merchant(category)))
        rows = min(2 + int(rng.expovariate(1 / 6)), 25)
        return _Visit(shopper, month, day, shelves, rows)


def generate_shop_rows(seed: int | None = None) -> Iterator[ShopRow]:
    """An endless stream of realistic log rows (see the module docstring); the same for a seed."""
    if seed is None:
        seed = random.SystemRandom().getrandbits(63)
    return _Generator(seed).rows()


def _pick(rng: random.Random, weights: dict[T, int]) -> T:
    return rng.choices(tuple(weights), tuple(weights.values()))[0]
