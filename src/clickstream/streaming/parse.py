"""Parse Kafka values with an event schema; split the records that do not fit, with a reason.

The parsed fields become top-level columns through ``inline(array(from_json(...)))``: a
generator, so the JSON is parsed once per record. Selecting ``data.*`` from a ``from_json``
struct instead lets the optimizer copy the parse into every field and filter that uses it,
which made parsing about three times slower.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from pyspark.sql import functions as F

from clickstream.events.schema import map_limits, spark_columns, spark_ddl, string_limits
from clickstream.settings import Settings
from clickstream.sinks.kafka_topic import KafkaTopic

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


@dataclass(frozen=True)
class FromText:
    """Another way to write a field: when the field is not of the contract's type, its JSON
    text (a string's value) is converted by ``convert``; a record whose text converts to null
    is bad, with ``field <name>: expected <expected>``. Records of the contract's type pay
    nothing (the text is read only for records that failed the parse)."""

    convert: Callable[[Column], Column]
    expected: str


TEXT_PREFIX = "_text_"
"""A :class:`FromText` field's text is kept as ``_text_<name>`` until :func:`good` drops it."""


def parse_json(
    raw: DataFrame,
    contract: type[msgspec.Struct],
    required: list[str],
    checks: Sequence[tuple[Column, str]] = (),
    from_text: Mapping[str, FromText] | None = None,
) -> DataFrame:
    """Kafka rows -> the contract's fields as columns, ``reason`` (None when the record is good)
    and the source columns prefixed with ``_``, so bad records can be dead-lettered with where
    they came from.

    A record is bad, with the first reason that applies: an empty value, a value that is not
    UTF-8, a field of the wrong type (named, with the type expected), a value that is not a
    JSON object, a missing required field, a string longer than the contract allows (so no
    field can make a result too large for Kafka), then ``checks``: (condition true for a bad
    record, reason) pairs. ``from_text`` fields may also be written as text, converted before
    any check (an event time as epoch milliseconds or a local time: :func:`event_millis`)."""
    from_text = dict(from_text or {})
    data = F.from_json(
        F.col("value").cast("string"),
        f"{spark_ddl(contract)}, `{CORRUPT}` string",
        {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT},
    )
    parsed = raw.select(
        *(F.col(name).alias(alias) for name, alias in SOURCE.items()), F.inline(F.array(data))
    )
    corrupt = F.col(CORRUPT).isNotNull()
    if from_text:
        # The parse keeps the fields it could read (partial results) and nulls the others.
        parsed = parsed.select(
            "*",
            *(
                F.when(
                    corrupt & F.col(f"`{name}`").isNull(),
                    F.get_json_object(F.col("_value").cast("string"), f"$.{name}"),
                ).alias(TEXT_PREFIX + name)
                for name in from_text
            ),
        ).withColumns(
            {
                name: F.coalesce(F.col(f"`{name}`"), way.convert(F.col(f"`{TEXT_PREFIX}{name}`")))
                for name, way in from_text.items()
            }
        )
    empty = F.col("_value").isNull() | (F.length("_value") == 0)
    reason: Column = F.when(empty, F.lit("empty value"))
    reason = reason.when(
        ~F.is_valid_utf8(F.col("_value").cast("string")), F.lit("value is not valid UTF-8")
    )
    for name, way in from_text.items():
        reason = reason.when(
            F.col(f"`{TEXT_PREFIX}{name}`").isNotNull() & F.col(f"`{name}`").isNull(),
            F.lit(f"field {name}: expected {way.expected}"),
        )
    for name, kind in spark_columns(contract):
        if name in from_text:
            continue
        # Only for records that failed to parse: a field present in the JSON but null after
        # the parse had the wrong type.
        present = F.get_json_object(F.col("_value").cast("string"), f"$.{name}").isNotNull()
        reason = reason.when(
            corrupt & present & F.col(f"`{name}`").isNull(),
            F.lit(f"field {name}: expected {_EXPECTED.get(kind, kind)}"),
        )
    # A record whose only faults were fields written another way, read from their text, is
    # not corrupt; one that is not an object at all has no text for any of them.
    recovered = [F.col(f"`{TEXT_PREFIX}{name}`").isNotNull() for name in from_text]
    whole = corrupt if not recovered else corrupt & ~_any(recovered)
    reason = reason.when(whole, F.lit("not a JSON object"))
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


LOCAL_TIME_FORMAT = "yyyy-MM-dd HH:mm:ss[.SSSSSS]"
"""A time as the seeds' producers write it: ``%Y-%m-%d %H:%M:%S`` (seed 000's API), Python's
``str(datetime.now())`` (seeds 003 and 004), with no zone."""
_ZONED = r"\d:\d\d(:\d\d(\.\d+)?)?\s*(Z|[+-]\d\d:?\d\d)$"
_UTC = ("UTC", "Etc/UTC", "Etc/UCT", "UCT", "Zulu", "Etc/Zulu", "Universal", "Etc/Universal")


def source_time(text: Column, timezone: str, fmt: str | None = None) -> Column:
    """``text`` (a time) as a timestamp: a time written with a zone (``Z``, ``+09:00``) as
    written, one without in ``timezone`` (``jobs.source_timezone``: where the producer's clock
    is); null when ``text`` is not a time (in ``fmt`` when given, else any form Spark reads).
    The session's time zone is UTC."""
    parsed = F.try_to_timestamp(text, F.lit(fmt)) if fmt else F.try_to_timestamp(text)
    if timezone in _UTC:
        return parsed
    local = F.to_utc_timestamp(parsed, timezone)
    return F.when(text.rlike(_ZONED), parsed).otherwise(local)


def event_millis(timezone: str) -> FromText:
    """An event time as the tracker sends it (epoch milliseconds) or as seed 000's API wrote it
    (``2026-12-06 10:00:00``: :data:`LOCAL_TIME_FORMAT`, a local time in ``timezone``): epoch
    milliseconds either way (digits in a string too)."""
    return FromText(
        lambda text: F.coalesce(
            text.try_cast("bigint"),
            F.unix_millis(source_time(text, timezone, LOCAL_TIME_FORMAT)),
        ),
        "epoch milliseconds or a time yyyy-MM-dd HH:mm:ss",
    )


INTEGER_TEXT = FromText(lambda text: text.try_cast("bigint"), "an integer")
"""An integer written as a number or as a string (``"1"``: seed 000's API sends every field as
a string)."""


def written_as_text(
    times: Sequence[str], integers: Sequence[str], timezone: str
) -> dict[str, FromText]:
    """``parse_json``'s ``from_text`` for event times (:func:`event_millis` in ``timezone``)
    and integers (:data:`INTEGER_TEXT`)."""
    return {
        **{name: event_millis(timezone) for name in times},
        **{name: INTEGER_TEXT for name in integers},
    }


def _any(conditions: list[Column]) -> Column:
    found = conditions[0]
    for condition in conditions[1:]:
        found = found | condition
    return found


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
    texts = [c for c in parsed.columns if c.startswith(TEXT_PREFIX)]
    return parsed.where(F.col("reason").isNull()).drop(*SOURCE.values(), CORRUPT, "reason", *texts)


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


DEAD = "_dead"
"""The column of a bad record's dead letter (``key``, ``value``) in :func:`split_once`'s
frames: null for a good record."""


def dead_letter() -> Column:
    """:data:`DEAD` for a parsed row: its dead letter (:func:`dead_letter_key`,
    :func:`dead_letter_value`) when the record is bad, else null."""
    return F.when(
        F.col("reason").isNotNull(),
        F.struct(dead_letter_key().alias("key"), dead_letter_value().alias("value")),
    ).alias(DEAD)


def split_once(
    checked: DataFrame, keys: Sequence[str], partitions: int
) -> tuple[DataFrame, DataFrame]:
    """The good rows and the dead letters of ``checked`` (rows with a :data:`DEAD` column),
    both from one read and parse: ``checked`` is shuffled once on ``keys`` (into
    ``partitions``, the shuffle partitions of a stateful query grouped on ``keys``, which then
    needs no shuffle of its own), and Spark reuses that shuffle's output for both frames
    (``ReusedExchange`` in the plan) when they are parts of one query (a union).

    Two things keep the two sides' shuffles identical, so that Spark can reuse one: each
    side's filter is behind :func:`_barrier`, so the optimizer cannot push it below the
    shuffle; and the dead letters' filter names every column, so none is pruned from one side
    only (the branch naming them is never taken)."""
    shuffled = checked.repartition(partitions, *keys)
    others = [F.col(c).cast("string") for c in shuffled.columns if c != DEAD]
    unused = (F.concat_ws("|", *others) == "") & F.col(DEAD).isNull()
    good_rows = shuffled.where(F.when(_barrier(), F.col(DEAD).isNull())).drop(DEAD)
    dead = shuffled.where(F.when(_barrier(), F.col(DEAD).isNotNull()).otherwise(unused))
    return good_rows, dead.select(DEAD)


def _barrier() -> Column:
    """Always true, but not deterministic: a filter behind it stays where it is written."""
    return F.spark_partition_id() >= 0


def with_dead_letters(
    write: Callable[[DataFrame, int], Any], settings: Settings
) -> Callable[[DataFrame, int], None]:
    """A ``foreachBatch`` function for a union of results (:data:`DEAD` null) and dead
    letters (:func:`split_once`): the batch is computed once (cached), its dead letters go to
    the dead-letter topic, and the rest to ``write`` (without :data:`DEAD`, read from that
    cache: ``fan_out(..., cached=True)``)."""
    dead_letters = KafkaTopic.dead_letters(settings)

    def write_both(batch: DataFrame, batch_id: int) -> None:
        batch = batch.persist()
        try:
            letters = batch.where(F.col(DEAD).isNotNull()).select(f"{DEAD}.key", f"{DEAD}.value")
            dead_letters.write(letters, batch_id)
            write(batch.where(F.col(DEAD).isNull()).drop(DEAD), batch_id)
        finally:
            batch.unpersist()

    return write_both
