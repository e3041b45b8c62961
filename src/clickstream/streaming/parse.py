"""Parse Kafka values with an event schema; split the records that do not fit, with a reason.

The parsed fields become top-level columns through ``inline(array(from_json(...)))``: a
generator, so the JSON is parsed once per record. Selecting ``data.*`` from a ``from_json``
struct instead lets the optimizer copy the parse into every field and filter that uses it,
which made parsing about three times slower.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import msgspec
from pyspark.sql import functions as F

from clickstream.events.schema import map_limits, spark_columns, spark_ddl, string_limits
from clickstream.settings import Settings
from clickstream.sinks.kafka_topic import KafkaTopic
from clickstream.streaming.spec import QuerySpec

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

CORRUPT = "_corrupt_record"
KEPT_CHARS = 65_536
"""A dead letter keeps this much of its record's value (and key): a record of any size that
Kafka took can be dead-lettered (``valueBytes`` says how long it was)."""
SOURCE = {
    "topic": "_topic",
    "partition": "_partition",
    "offset": "_offset",
    "timestamp": "_kafka_timestamp",
    "key": "_key",
    "value": "_value",
}


def parse_json(
    raw: DataFrame,
    contract: type[msgspec.Struct],
    required: list[str],
    checks: Sequence[tuple[Column, str]] = (),
) -> DataFrame:
    """Kafka rows -> the contract's fields as columns, ``reason`` (None when the record is good)
    and the source columns prefixed with ``_``, so bad records can be dead-lettered with where
    they came from.

    A record is bad, with the first reason that applies: an empty value, a value that is not
    UTF-8, a field of the wrong type (named, with the type expected), a value that is not a
    JSON object, a missing required field, a string longer than the contract allows (so no
    field can make a result too large for Kafka), then ``checks``: (condition true for a bad
    record, reason) pairs."""
    ddl = spark_ddl(contract)
    data = F.from_json(
        F.col("value").cast("string"),
        f"{ddl}, `{CORRUPT}` string",
        {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT},
    )
    parsed = raw.select(
        *(F.col(name).alias(alias) for name, alias in SOURCE.items()), F.inline(F.array(data))
    )
    corrupt = F.col(CORRUPT).isNotNull()
    reason: Column = F.when(F.col("_value").isNull(), F.lit("empty value"))
    reason = reason.when(
        ~F.is_valid_utf8(F.col("_value").cast("string")), F.lit("value is not valid UTF-8")
    )
    for name, kind in spark_columns(contract):
        # Only for records that failed to parse: a field present in the JSON but null after
        # the parse had the wrong type.
        present = F.get_json_object(F.col("_value").cast("string"), f"$.{name}").isNotNull()
        reason = reason.when(
            corrupt & present & F.col(f"`{name}`").isNull(),
            F.lit(f"field {name}: expected {_EXPECTED.get(kind, kind)}"),
        )
    reason = reason.when(corrupt, F.lit("not a JSON object"))
    for field in required:
        reason = reason.when(
            F.col(f"`{field}`").isNull(), F.lit(f"missing or invalid field {field}")
        )
    for field, bound in string_limits(contract).items():
        reason = reason.when(
            F.length(F.col(f"`{field}`")) > bound,
            F.lit(f"field {field} is longer than {bound} characters"),
        )
    for field, (entries, key_chars, value_chars) in map_limits(contract).items():
        column = F.col(f"`{field}`")
        reason = reason.when(
            F.size(column) > entries, F.lit(f"field {field} has more than {entries} entries")
        )
        reason = reason.when(
            F.exists(F.map_keys(column), _longer_than(key_chars))
            | F.exists(F.map_values(column), _longer_than(value_chars)),
            F.lit(
                f"field {field}: a name longer than {key_chars} or a value longer than "
                f"{value_chars} characters"
            ),
        )
    for condition, why in checks:
        reason = reason.when(condition, F.lit(why))
    return parsed.withColumn("reason", reason)


def time_checks(fields: Sequence[str], max_future_s: int) -> list[tuple[Column, str]]:
    """Checks that event times (epoch ms) are not negative and not more than ``max_future_s``
    ahead of the record's Kafka timestamp (when it reached Kafka: the collector's receive time,
    a producer's clock; Kafka 4 refuses one more than an hour ahead of the broker's): one record
    from a wrong clock would otherwise move a watermark into the future, and every later event
    would be dropped as late.

    The Kafka timestamp, not the micro-batch's time: a replayed batch dead-letters the same
    records, and the plan holds no per-batch literal (``current_timestamp()`` is one, and Spark
    compiles new code for every batch whose plan differs: metaspace grew by the minute)."""
    arrived_ms = F.unix_millis(F.col("_kafka_timestamp"))
    checks = []
    for field in fields:
        column = F.col(f"`{field}`")
        checks.append((column < 0, f"field {field} is before 1970"))
        checks.append(
            (
                (arrived_ms > 0) & (column > arrived_ms + max_future_s * 1000),
                f"field {field} is more than {max_future_s} s ahead of its arrival in Kafka",
            )
        )
    return checks


def _longer_than(chars: int) -> Callable[[Column], Column]:
    return lambda text: F.length(text) > chars


_EXPECTED = {
    "bigint": "an integer",
    "double": "a number",
    "boolean": "true or false",
    "string": "a string",
    "map<string,string>": "an object",
}


def good(parsed: DataFrame) -> DataFrame:
    """The records that fit, with the event's columns only."""
    return parsed.where(F.col("reason").isNull()).drop(*SOURCE.values(), CORRUPT, "reason")


def dead_letter_value() -> Column:
    """A bad record's dead-letter value: JSON with the reason and the source record."""
    utf8 = F.coalesce(F.is_valid_utf8(F.col("_value").cast("string")), F.lit(True))
    return F.to_json(
        F.struct(
            F.col("reason"),
            F.col("_topic").alias("sourceTopic"),
            F.col("_partition").alias("sourcePartition"),
            F.col("_offset").alias("sourceOffset"),
            F.col("_kafka_timestamp").alias("sourceTimestamp"),
            # The record as it was: its text, or base64 when it is not UTF-8.
            F.when(utf8, F.substring(F.col("_value").cast("string"), 1, KEPT_CHARS)).alias("value"),
            F.when(~utf8, F.base64(F.substring("_value", 1, KEPT_CHARS))).alias("valueBase64"),
            F.length("_value").alias("valueBytes"),
        )
    )


def dead_letter_key() -> Column:
    """A bad record's dead-letter key: its own, cut to :data:`KEPT_CHARS` bytes."""
    return F.substring("_key", 1, KEPT_CHARS)


def bad(parsed: DataFrame) -> DataFrame:
    """Dead-letter records: :func:`dead_letter_key` and :func:`dead_letter_value`."""
    return parsed.where(F.col("reason").isNotNull()).select(
        dead_letter_key().alias("key"), dead_letter_value().alias("value")
    )


def dead_letter_query(
    parsed: DataFrame, settings: Settings, name: str = "dead-letter"
) -> QuerySpec:
    """The query sending a job's bad records to the dead-letter topic. Bad records are rare, so
    they are produced from the driver, every ``jobs.trigger_s`` (not latency-critical)."""
    return QuerySpec(
        name,
        bad(parsed),
        KafkaTopic.dead_letters(settings),
        trigger_s=settings.jobs.trigger_s,
        background=True,
    )
