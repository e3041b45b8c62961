"""Parse Kafka values with an event schema; split the records that do not fit, with a reason."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import functions as F

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

SOURCE_COLUMNS = ["topic", "partition", "offset", "timestamp", "key", "value"]
CORRUPT = "_corrupt_record"


def parse_json(raw: DataFrame, ddl: str, required: list[str]) -> DataFrame:
    """Kafka rows -> ``data`` (the parsed struct), ``reason`` (None when the record is good),
    and the source columns, so bad records can be dead-lettered with where they came from."""
    text = F.col("value").cast("string")
    data = F.from_json(
        text,
        f"{ddl}, `{CORRUPT}` string",
        {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT},
    )
    parsed = raw.select(*SOURCE_COLUMNS, data.alias("data"))
    reason: Column = F.when(F.col("value").isNull(), F.lit("empty value"))
    reason = reason.when(
        F.col("data").isNull() | F.col(f"data.{CORRUPT}").isNotNull(),
        F.lit("not a JSON object"),
    )
    for field in required:
        reason = reason.when(
            F.col(f"data.`{field}`").isNull(), F.lit(f"missing or invalid field {field}")
        )
    return parsed.withColumn("reason", reason)


def good(parsed: DataFrame) -> DataFrame:
    return (
        parsed.where(F.col("reason").isNull())
        .select("data.*", "topic", "partition", "offset")
        .drop(CORRUPT)
    )


def bad(parsed: DataFrame) -> DataFrame:
    """Dead-letter records: the key, and a JSON value with the reason and the source record."""
    value = F.to_json(
        F.struct(
            F.col("reason"),
            F.col("topic").alias("sourceTopic"),
            F.col("partition").alias("sourcePartition"),
            F.col("offset").alias("sourceOffset"),
            F.col("timestamp").alias("sourceTimestamp"),
            F.col("value").cast("string").alias("value"),
        )
    )
    return parsed.where(F.col("reason").isNotNull()).select(F.col("key"), value.alias("value"))
