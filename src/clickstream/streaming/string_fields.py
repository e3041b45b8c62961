"""Parse Kafka values that a JSON Schema describes as an object of required string fields (the
seed-003 schemas), exactly: a number, ``true``, ``null``, an object or an array where a string
is required makes the record bad, as the schema says (Spark's JSON reader would otherwise turn
``123`` into ``"123"``).

Each field is read as a ``variant`` (one JSON parse per record, duplicate keys: the last wins,
as in Python's ``json``) and its JSON type checked with ``schema_of_variant``. The result has
the same columns as :func:`~clickstream.streaming.parse.parse_json` (the fields, ``reason``, and
the source columns prefixed with ``_``), so :func:`~clickstream.streaming.parse.dead_letter_value`
and friends apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from clickstream.streaming.parse import CORRUPT, SOURCE

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame


def parse_string_fields(
    raw: DataFrame,
    fields: Sequence[str],
    max_chars: int,
    checks: Sequence[tuple[Column, str]] = (),
) -> DataFrame:
    """Kafka rows -> ``fields`` as string columns, ``reason`` (None for a good record), source
    columns. ``checks`` are (true for a bad record, reason) pairs over the parsed columns."""
    ddl = ", ".join(f"`{name}` variant" for name in fields)
    data = F.from_json(
        F.col("value").cast("string"),
        f"{ddl}, `{CORRUPT}` string",
        {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT},
    )
    parsed = raw.select(
        *(F.col(name).alias(alias) for name, alias in SOURCE.items()),
        F.inline(F.array(data)),
    )
    kinds = {name: F.schema_of_variant(F.col(f"`{name}`")) for name in fields}
    reason: Column = F.when(F.col("_value").isNull(), F.lit("empty value"))
    reason = reason.when(
        ~F.is_valid_utf8(F.col("_value").cast("string")), F.lit("value is not valid UTF-8")
    )
    reason = reason.when(F.col(CORRUPT).isNotNull(), F.lit("not a JSON object"))
    for name in fields:
        kind = kinds[name]
        reason = reason.when(
            F.col(f"`{name}`").isNull() | (kind == F.lit("VOID")),
            F.lit(f"missing field {name}"),
        )
        reason = reason.when(
            kind != F.lit("STRING"), F.concat(F.lit(f"field {name}: expected a string, not "), kind)
        )
    texts = [F.col(f"`{name}`").cast("string").alias(name) for name in fields]
    out = parsed.select(*SOURCE.values(), CORRUPT, *texts, reason.alias("reason"))
    later: Column = F.when(F.col("reason").isNotNull(), F.col("reason"))
    for name in fields:
        later = later.when(
            F.length(F.col(f"`{name}`")) > max_chars,
            F.lit(f"field {name} is longer than {max_chars} characters"),
        )
    for condition, why in checks:
        later = later.when(condition, F.lit(why))
    return out.withColumn("reason", later)
