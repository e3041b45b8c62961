"""Input for the joins job's tests: users and page events with every awkward case, and the
expected results computed by DuckDB from the same records."""

from __future__ import annotations

import datetime
import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import duckdb

from clickstream.events.joins import EVENTS, TIME_FORMAT, user_id_of
from clickstream.kafka.admin import ensure_topics
from clickstream.kafka.clients import make_producer
from clickstream.settings import Settings

T0 = datetime.datetime(2026, 11, 29, 12, 0, 0, tzinfo=datetime.UTC)


def stamp(seconds: float) -> str:
    return (T0 + datetime.timedelta(seconds=seconds)).strftime(TIME_FORMAT)


def user_record(at: float, user_id: str, email: str, name: str) -> dict[str, Any]:
    return {"event_timestamp": stamp(at), "user_id": user_id, "email": email, "name": name}


def page_event(at: float, user_id: str, page: str, event: str) -> dict[str, Any]:
    return {"event_timestamp": stamp(at), "user_id": user_id, "page": page, "event": event}


@dataclass
class JoinInput:
    users: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    bad_users: list[bytes] = field(default_factory=list)
    bad_events: list[bytes] = field(default_factory=list)


def join_settings(settings: Settings, data_dir: Any, **joins: Any) -> Settings:
    tag = uuid.uuid4().hex[:8]
    topics = {"results": f"results-{tag}", "dead_letter": f"dead-{tag}"}
    names = {"users_topic": f"users-{tag}", "events_topic": f"events-{tag}"}
    ensure_topics(settings, [*topics.values(), *names.values()], partitions=2)
    return settings.model_copy(
        update={
            "data_dir": data_dir,
            "topics": settings.topics.model_copy(update=topics),
            "joins": settings.joins.model_copy(update={**names, **joins}),
        }
    )


def make_input(seed: int, users: int, spread_s: int = 600) -> JoinInput:
    """``users`` users, each with 1-10 events within ``spread_s`` of their own time (some before
    it), a few users sent again with new details, events of unknown users, events far from their
    user's time, bad records of every kind; in shuffled order (out of order in event time)."""
    rng = random.Random(seed)
    data = JoinInput()
    for n in range(users):
        email = f"user{n}-{seed}@example.org"
        at = n * 7.0
        uid = user_id_of(email)
        data.users.append(user_record(at, uid, email, f"Имя {n}"))
        if n % 5 == 0:  # sent again later with new details: the newest wins
            data.users.append(user_record(at + 30, uid, f"new{n}@example.org", f"Новое {n}"))
        for k in range(rng.randint(1, 10)):
            offset = rng.uniform(-spread_s * 0.9, spread_s * 0.9)
            page = f"https://site.example/{n}/{k}"
            data.events.append(page_event(at + offset, uid, page, rng.choice(EVENTS)))
        if n % 7 == 3:  # far from its user's time: joined all the same (no time bound)
            far = f"https://site.example/{n}/far"
            data.events.append(page_event(at + spread_s * 3 + 5, uid, far, "click"))
    for n in range(4):  # nobody has these ids: unmatched, per id
        ghost = f"https://site.example/ghost/{n}"
        data.events.append(page_event(n * 11.0, f"ghost-{n}", ghost, "scroll"))
    rng.shuffle(data.users)
    rng.shuffle(data.events)
    good_event = data.events[0]
    data.bad_events = [
        json.dumps({**good_event, "user_id": 12345}).encode(),
        json.dumps({k: v for k, v in good_event.items() if k != "event"}).encode(),
        json.dumps({**good_event, "event_timestamp": "yesterday"}).encode(),
        b"not json",
        b"[1, 2]",
        json.dumps({**good_event, "page": None}).encode(),
    ]
    good_user = data.users[0]
    data.bad_users = [
        json.dumps({**good_user, "email": ["a@b.c"]}).encode(),
        json.dumps({k: v for k, v in good_user.items() if k != "name"}).encode(),
        b"\xff\xfe",
    ]
    return data


def send(settings: Settings, data: JoinInput) -> None:
    producer = make_producer(settings)
    joins = settings.joins
    for record in data.users:
        producer.produce(joins.users_topic, json.dumps(record).encode(), key=record["user_id"])
    for value in data.bad_users:
        producer.produce(joins.users_topic, value)
    for record in data.events:
        producer.produce(joins.events_topic, json.dumps(record).encode(), key=record["user_id"])
    for value in data.bad_events:
        producer.produce(joins.events_topic, value)
    producer.flush()


def expected(inputs: list[JoinInput]) -> dict[str, Any]:
    """What the job must find, by a DuckDB query over the same good records: the seed's inner
    merge of all events with each user's newest details, over all time; every event by type;
    and the events whose user never arrived, per user id."""
    con = duckdb.connect()
    users = [
        (i, u["user_id"], u["name"], u["email"], u["event_timestamp"])
        for i, u in enumerate(u for d in inputs for u in d.users)
    ]
    events = [
        (e["user_id"], e["page"], e["event"], e["event_timestamp"])
        for d in inputs
        for e in d.events
    ]
    con.execute("CREATE TABLE u (seq INT, user_id TEXT, name TEXT, email TEXT, ts TIMESTAMP)")
    con.execute("CREATE TABLE e (user_id TEXT, page TEXT, event TEXT, ts TIMESTAMP)")
    con.executemany("INSERT INTO u VALUES (?, ?, ?, ?, ?)", users)
    con.executemany("INSERT INTO e VALUES (?, ?, ?, ?)", events)
    con.execute("""
        CREATE TABLE newest AS SELECT * FROM u QUALIFY row_number() OVER (
            PARTITION BY user_id ORDER BY ts DESC, seq DESC) = 1""")
    per_user = con.execute("""
        SELECT e.user_id, n.name, n.email, count(*) FROM e JOIN newest n USING (user_id)
        GROUP BY ALL""").fetchall()
    types = con.execute("SELECT event, count(*) FROM e GROUP BY event").fetchall()
    unmatched = con.execute(
        "SELECT user_id, count(*) FROM e ANTI JOIN newest USING (user_id) GROUP BY user_id"
    ).fetchall()
    return {
        "per_user": {r[0]: (r[1], r[2], r[3]) for r in per_user},
        "types": dict(types),
        "unmatched": dict(unmatched),
    }


def newest_time_ms(inputs: list[JoinInput]) -> int:
    """The newest ``event_timestamp`` of the good users and events (epoch ms): how fresh the
    job's totals must say they are once it counted them all."""
    stamps = [r["event_timestamp"] for d in inputs for r in (*d.users, *d.events)]
    newest = max(datetime.datetime.strptime(s, TIME_FORMAT) for s in stamps)
    return int(newest.replace(tzinfo=datetime.UTC).timestamp() * 1000)
