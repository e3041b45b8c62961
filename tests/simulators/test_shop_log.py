"""The shopping log: reading a file (typed rows, malformed lines named) and synthetic rows."""

from __future__ import annotations

import calendar
import itertools
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from clickstream.events.shop import COLUMNS, ShopEvent
from clickstream.simulators.shop import (
    RowError,
    ShopLogError,
    ShopRow,
    count_rows,
    generate_shop_rows,
    read_shop_csv,
    write_shop_csv,
)
from clickstream.simulators.shop_data import PROVINCES
from tests.simulators.shop_logs import (
    BAD,
    GOOD,
    HEADER,
    ID,
    LOG,
    START_MS,
    as_event,
    clickstream,
    read,
)

# -- reading -------------------------------------------------------------------------------------


def test_reads_typed_rows_and_names_each_malformed_line(tmp_path: Path) -> None:
    rows = read(tmp_path, LOG)
    assert [row for _, row in rows if isinstance(row, ShopRow)] == GOOD
    assert [line for line, row in rows if isinstance(row, ShopRow)] == [2, 3, 5, 9, 10]
    errors = [row for _, row in rows if isinstance(row, RowError)]
    assert {error.line: str(error) for error in errors} == BAD
    assert (errors[1].column, errors[1].value) == ("gender", "x")


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ("1,2,3,4,5,13,01,0,1,1,Hebei", "month must be an integer from 1 to 12 (got '13')"),
        ("1,2,3,4,5,06,00,0,1,1,Hebei", "day must be an integer from 1 to 31 (got '00')"),
        ("1,2,3,4,5,06,01,4,1,1,Hebei", "action must be 0, 1, 2 or 3 (got '4')"),
        ("1,2,3,4,5,06,01,,1,1,Hebei", "action must be 0, 1, 2 or 3 (got '')"),
        ("1,2,3,4,5,06,01,0,9,1,Hebei", "age_range must be an integer from 0 to 8 (got '9')"),
        ("1,2,3,4,5,06,01,0,1,3,Hebei", "gender must be 0, 1 or 2 (got '3')"),
        (",2,3,4,5,06,01,0,1,1,Hebei", f"user_id {ID} (got '')"),
        ("1,-2,3,4,5,06,01,0,1,1,Hebei", f"item_id {ID} (got '-2')"),
        ("1,2,3.0,4,5,06,01,0,1,1,Hebei", f"cat_id {ID} (got '3.0')"),
        (f"1,2,3,{2**63},5,06,01,0,1,1,Hebei", f"merchant_id {ID} (got '{2**63}')"),
        ("1,2,3,4,1_0,06,01,0,1,1,Hebei", f"brand_id {ID} (got '1_0')"),
    ],
)  # fmt: skip
def test_a_bad_value_names_its_line_column_and_value(
    tmp_path: Path, cells: str, message: str
) -> None:
    good = "5,6,7,8,9,06,01,0,1,1,Hebei"
    ((_, first), (_, error), (_, last)) = read(tmp_path, f"{HEADER}\n{good}\n{cells}\n{good}\n")
    assert isinstance(first, ShopRow)
    assert isinstance(last, ShopRow)
    assert str(error) == f"line 3: {message}"


def test_header_in_any_order_and_case_with_a_bom_and_crlf(tmp_path: Path) -> None:
    columns = ["note", *reversed(COLUMNS)]  # a column we do not know is ignored
    header = ",".join(
        name.upper() if i % 2 else f" {name.title()} " for i, name in enumerate(columns)
    )
    cells = ["hi", "Guangdong", "0", "3", "2", "11", "11", "", "4", "3", "2", "1"]  # reversed
    text = f"\ufeff{header}\r\n{','.join(cells)}\r\n\r\n"
    assert read(tmp_path, text) == [(2, ShopRow(1, 2, 3, 4, None, 11, 11, 2, 3, 0, "Guangdong"))]


def test_empty_and_null_cells_are_none_where_the_contract_allows(tmp_path: Path) -> None:
    text = f"{HEADER}\n 7 , NULL ,,null,, , ,0,,,  \n"
    row = ShopRow(7, None, None, None, None, None, None, 0, None, None, None)
    assert read(tmp_path, text) == [(2, row)]


def test_line_numbers_count_physical_lines(tmp_path: Path) -> None:
    good = "5,6,7,8,9,06,01,0,1,1,Hebei"
    text = (
        f'{HEADER}\n{good}\n1,2,3,4,5,06,01,0,1,1,"Hei\nlong"\n\n\n{good}\n1,2,3,4,5,06,01,0,1,1\n'
    )
    rows = read(tmp_path, text)
    assert [line for line, _ in rows] == [2, 3, 7, 8]
    assert rows[1][1] == ShopRow(1, 2, 3, 4, 5, 6, 1, 0, 1, 1, "Hei\nlong")
    assert str(rows[3][1]) == "line 8: expected 11 columns, got 10"


def test_a_line_that_is_not_utf8_is_a_malformed_row(tmp_path: Path) -> None:
    good = b"5,6,7,8,9,06,01,0,1,1,Hebei\n"
    rows = read(
        tmp_path, HEADER.encode() + b"\n" + good + b"1,2,3,4,5,06,01,0,1,1,\xff\xfe\n" + good
    )
    assert [(line, str(row)) for line, row in rows if isinstance(row, RowError)] == [
        (3, "line 3: is not valid UTF-8 text")
    ]
    assert len(rows) == 3


def test_header_missing_a_column_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(HEADER.replace(",province", "") + "\n1,2,3,4,5,06,01,0,1,1\n")
    with pytest.raises(
        ShopLogError, match=r"log\.csv: the header \(line 1\) has no column province"
    ):
        read_shop_csv(path)
    path.write_text("328862,323294,833,2882,2661,08,29,0,0,1,Inner Mongolia\n")
    with pytest.raises(ShopLogError, match="has no columns user_id, item_id, cat_id"):
        read_shop_csv(path)
    path.write_text(HEADER + ",Gender\n")
    with pytest.raises(ShopLogError, match="repeats gender"):
        read_shop_csv(path)
    path.write_text("")
    with pytest.raises(ShopLogError, match="is empty"):
        read_shop_csv(path)
    with pytest.raises(ShopLogError, match=r"cannot read .*nope\.csv"):
        read_shop_csv(tmp_path / "nope.csv")
    result = clickstream("short.csv", cwd=tmp_path)  # fails before connecting to Kafka
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot read short.csv")
    (tmp_path / "short.csv").write_text("user_id,action\n1,0\n")
    result = clickstream("short.csv", cwd=tmp_path)
    assert result.returncode == 1
    assert "has no columns item_id, cat_id, merchant_id, brand_id, month, day" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_count_rows(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(LOG)
    assert count_rows(path) == 9
    path.write_text(LOG.rstrip("\n"))
    assert count_rows(path) == 9
    assert count_rows(path, max_bytes=10) is None
    assert count_rows(tmp_path / "nope.csv") is None


# -- synthetic rows ------------------------------------------------------------------------------


def test_generator_is_deterministic_for_a_seed() -> None:
    first = list(itertools.islice(generate_shop_rows(11), 300))
    assert first == list(itertools.islice(generate_shop_rows(11), 300))
    assert first != list(itertools.islice(generate_shop_rows(12), 300))


def test_written_rows_read_back_the_same(tmp_path: Path) -> None:
    rows = list(itertools.islice(generate_shop_rows(5), 2000))
    for path in (tmp_path / "log.csv", tmp_path / "log.csv.gz"):
        assert write_shop_csv(path, rows) == 2000
        assert [row for _, row in read_shop_csv(path)] == rows
        with pytest.raises(ShopLogError, match="already exists"):
            write_shop_csv(path, rows[:1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv", "log.csv.gz"]  # no temp file


def test_generate_writes_a_plausible_log(tmp_path: Path) -> None:
    result = clickstream("--generate", "5000", "--out", "log.csv", "--seed", "7", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("wrote 5000 rows (")
    assert result.stdout.rstrip().endswith("users) to log.csv")
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert lines[0] == HEADER
    assert len(lines) == 5001
    assert all(len(line.split(",")[5]) == 2 and len(line.split(",")[6]) == 2 for line in lines[1:])
    parsed = list(read_shop_csv(tmp_path / "log.csv"))
    rows = [row for _, row in parsed]
    assert all(isinstance(row, ShopRow) for row in rows), [
        r for r in rows if not isinstance(r, ShopRow)
    ][:3]
    good = [row for row in rows if isinstance(row, ShopRow)]
    for row in good:  # every row fits the contract
        msgspec.convert(as_event(row, START_MS), ShopEvent)

    def share(field: str, value: object) -> float:
        return float(sum(getattr(row, field) == value for row in good) / len(good))

    assert 0.55 <= share("gender", 0) <= 0.70
    assert 0.20 <= share("gender", 1) <= 0.30
    assert 0.85 <= share("action", 0) <= 0.90
    assert 0.005 <= share("action", 1) <= 0.02
    assert 0.045 <= share("action", 2) <= 0.07
    assert 0.045 <= share("action", 3) <= 0.07
    assert 0.005 <= share("brand_id", None) <= 0.06
    assert 0.01 <= share("age_range", None) <= 0.10
    assert {row.age_range for row in good} == {None, *range(9)}
    assert {row.month for row in good} == set(range(5, 12))
    assert all(1 <= row.day <= calendar.monthrange(2015, row.month)[1] for row in good)  # type: ignore[arg-type,operator]
    assert {row.province for row in good} - {None} <= set(PROVINCES)
    assert len({row.province for row in good}) > 20
    per_user = Counter(row.user_id for row in good)
    assert len(per_user) < len(good) / 5  # shoppers come back
    assert sum(n for n in per_user.values() if n >= 3) > 0.8 * len(good)
    for user in list(per_user)[:50]:  # a shopper keeps one gender, age range and province
        assert len({(r.gender, r.age_range, r.province) for r in good if r.user_id == user}) == 1

    again = clickstream("--generate", "10", "--out", "log.csv", cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.strip() == "error: log.csv already exists: pass --force to overwrite it"
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 5001
    forced = clickstream("--generate", "10", "--out", "log.csv", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 11
    alone = clickstream("--generate", "10", cwd=tmp_path)
    assert alone.returncode == 2
    assert "--generate N and --out FILE go together" in alone.stderr
