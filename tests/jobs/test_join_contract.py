"""Our validation of users and page events accepts and rejects exactly what the seed's draft-07
JSON Schemas do (checked with the ``jsonschema`` library on a corpus of random JSON), apart
from the two rules of our own (event_timestamp is a time, fields at most 1024 characters),
which are tested on their own."""

from __future__ import annotations

import datetime
import json
import random
from typing import Any, cast

import pytest
from jsonschema import Draft7Validator

from clickstream.events.joins import MAX_CHARS, PageEvent, User, fields, schema
from clickstream.jobs.joins import parse
from clickstream.settings import Settings

pytestmark = pytest.mark.slow
GOOD_TIME = "2026-11-29 12:00:00"


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["str", "int", "float", "bool", "null"] + (["list", "dict"] if depth < 2 else [])
    kind = rng.choice(kinds)
    if kind == "str":
        return rng.choice(["", "x", "тест", "1", "true", "null", GOOD_TIME, 'a"b'])
    if kind == "int":
        return rng.randint(-(2**40), 2**40)
    if kind == "float":
        return rng.uniform(-1e6, 1e6)
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {f"k{i}": random_json(rng, depth + 1) for i in range(rng.randint(0, 3))}


def corpus(names: list[str], rng: random.Random, n: int) -> list[str]:
    docs = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.08:  # not an object at all
            docs.append(json.dumps(random_json(rng)))
            continue
        doc: dict[str, Any] = {}
        for name in names:
            r = rng.random()
            if r < 0.75:  # mostly a good string, so that many records are valid
                doc[name] = (
                    GOOD_TIME if name == "event_timestamp" else f"{name}-{rng.randint(0, 9)}"
                )
            elif r < 0.85:
                continue  # missing
            else:
                value = random_json(rng)
                if name == "event_timestamp" and isinstance(value, str):
                    value = GOOD_TIME  # our own rule is tested apart
                doc[name] = value
        if rng.random() < 0.3:
            doc["extra"] = random_json(rng)  # the schemas allow more properties
        docs.append(json.dumps(doc, ensure_ascii=False))
    return docs


def verdicts(spark: Any, settings: Settings, kind: Any, docs: list[str]) -> list[str | None]:
    now = datetime.datetime.now(datetime.UTC)
    raw = spark.createDataFrame(
        [(None, d.encode(), "t", 0, i, now, 0) for i, d in enumerate(docs)],
        "key binary, value binary, topic string, partition int, offset long, "
        "timestamp timestamp, timestampType int",
    )
    rows = parse(raw, kind, settings).select("_offset", "reason").collect()
    return [r["reason"] for r in sorted(rows, key=lambda r: r["_offset"])]


@pytest.mark.parametrize("kind", [User, PageEvent])
def test_accepts_exactly_what_the_schema_accepts(spark: Any, settings: Settings, kind: Any) -> None:
    validator = Draft7Validator(schema(kind))
    Draft7Validator.check_schema(schema(kind))
    docs = corpus(fields(kind), random.Random(15), 600)
    ours = verdicts(spark, settings, kind, docs)
    expected = [validator.is_valid(json.loads(d)) for d in docs]
    assert 100 < sum(expected) < 500  # both kinds well represented
    disagree = [(d, r) for d, r, ok in zip(docs, ours, expected, strict=True) if (r is None) != ok]
    assert disagree == []


def test_rules_of_our_own(spark: Any, settings: Settings) -> None:
    good = {"event_timestamp": GOOD_TIME, "user_id": "1", "page": "p", "event": "click"}
    docs = [
        json.dumps(good),
        json.dumps({**good, "event_timestamp": "2026-11-29T12:00:00Z"}),
        json.dumps({**good, "event_timestamp": "yesterday"}),
        json.dumps({**good, "page": "x" * (MAX_CHARS + 1)}),
        json.dumps({**good, "event_timestamp": "2999-01-01 00:00:00"}),
    ]
    reasons = verdicts(spark, settings, PageEvent, docs)
    assert reasons[:2] == [None, None]
    assert "event_timestamp is not a time" in cast(str, reasons[2])
    assert reasons[3] == f"field page is longer than {MAX_CHARS} characters"
    assert "ahead of its arrival" in cast(str, reasons[4])
