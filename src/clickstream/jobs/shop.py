"""Shop counts (the live shop scenario): shoppers per second by gender, events by action.

Reads the shop topic (``clickstream simulate shop``), counts per window of event time
(``jobs.count_window_s``, 1 s by default, as the seed) the events per gender (``female``,
``male``, ``unknown`` for 2 or empty: the seed's "wordcount" of gender) and per action
(``click``, ``cart``, ``purchase``, ``favourite``). Results go to the result topic and the
warehouse table ``window_counts`` (metrics ``shop.gender`` and ``shop.action``). Records that
are not shop events go to the dead-letter topic with the reason.

It reads ``topics.shop`` and ``topics.shop_genders`` (``sex``, the seed's topic), each record in
either form: a shop event (JSON, ``timestamp`` in epoch milliseconds or a local time in
``jobs.source_timezone``), or the seed's record, the gender byte alone (``0``, ``1`` or ``2``,
as its producer sends ``line[9]``), which counts in ``shop.gender`` only, at the time it
reached Kafka (the seed counted what arrived each second).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from clickstream.events.shop import ACTIONS, GENDERS, ShopEvent
from clickstream.settings import Settings
from clickstream.spark.io import read_kafka
from clickstream.streaming.counts import Measure, Windows, live_counts
from clickstream.streaming.parse import CORRUPT, parse_json, time_checks, written_as_text
from clickstream.streaming.spec import JobSpec

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

NAME = "shop"
GENDER_ONLY = r"^\s*[0-2]\s*$"
"""A record of the seed's producer: the gender byte alone (``producer.send('sex', line[9])``)."""


def label(column: str, labels: dict[int, str], default: str | None = None) -> Column:
    """The label of a coded column (``gender`` 0 -> ``female``); ``default`` when null."""
    mapping = F.create_map(*(F.lit(x) for pair in labels.items() for x in pair))
    found = F.element_at(mapping, F.col(column).cast("int"))
    return F.coalesce(found, F.lit(default)) if default else found


def measures() -> list[Measure]:
    return [
        Measure("shop.gender", label("gender", GENDERS, default="unknown")),
        Measure("shop.action", label("action", ACTIONS)),
    ]


def parse(raw: DataFrame, settings: Settings) -> DataFrame:
    """Shop events and the seed's gender-only records, checked (:func:`parse_json`'s columns)."""
    checks = [
        *time_checks(["timestamp"], settings.jobs.max_future_s),
        (~F.col("action").between(0, 3), "action must be 0, 1, 2 or 3"),
        (F.coalesce(~F.col("gender").between(0, 2), F.lit(False)), "gender must be 0, 1 or 2"),
    ]
    texts = written_as_text(["timestamp"], [], settings.jobs.source_timezone)
    parsed = parse_json(raw, ShopEvent, ["user_id", "action", "timestamp"], checks, from_text=texts)
    # A gender byte alone is not a JSON object, so only a record that failed the parse is
    # looked at again.
    bare = F.col(CORRUPT).isNotNull() & F.col("_value").cast("string").rlike(GENDER_ONLY)
    return parsed.withColumns(
        {
            "gender": F.when(bare, F.trim(F.col("_value").cast("string")).cast("bigint")).otherwise(
                F.col("gender")
            ),
            "timestamp": F.when(bare, F.unix_millis("_kafka_timestamp")).otherwise(
                F.col("timestamp")
            ),
            "reason": F.when(~bare, F.col("reason")),
        }
    )


def build(spark: SparkSession, settings: Settings, starting_offsets: str = "earliest") -> JobSpec:
    raw = read_kafka(
        spark,
        sorted({settings.topics.shop, settings.topics.shop_genders}),
        settings=settings,
        starting_offsets=starting_offsets,
    )
    windows = Windows.from_settings(settings)
    counts = live_counts(
        parse(raw, settings), F.col("timestamp"), measures(), windows, settings, job=NAME
    )
    return JobSpec(NAME, [counts])
