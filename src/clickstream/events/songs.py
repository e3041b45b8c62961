"""Song plays (the songs scenario): one ``song_completed`` event per song a listener finished.

The payload is the seed's producer's, field for field, so its own producer works unchanged:
``user_id`` (20000-100000), ``artist``, ``song_id`` (0-9, the song's place in the artist's list),
``song_name``, ``event_type`` (always ``song_completed``) and ``timestamp``, a
``YYYY-MM-DD HH:MM:SS`` string (read as UTC; the seed's producer stamps a random time earlier in
the current month). A fraction of a second (``.ffffff``) is accepted too: the seed's producer
sends ``str(fake.date_time_this_month())``, which current Faker versions give microseconds.

:data:`CATALOG` holds the artists ``clickstream simulate songs`` can play, each with its own ten
songs; ``tony-allen`` and its songs are the seed's.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

EVENT_TYPE: Literal["song_completed"] = "song_completed"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SPARK_TIME_FORMAT = "yyyy-MM-dd HH:mm:ss[.SSSSSS]"
MIN_USER, MAX_USER = 20_000, 100_000
MAX_NAME = 256

CATALOG: dict[str, tuple[str, ...]] = {
    "tony-allen": (
        "zombie",
        "lady",
        "secret-agent",
        "kindness",
        "soldiers",
        "asiko",
        "the-same-blood",
        "upside-down",
        "african-man",
        "vip",
    ),
    "fela-kuti": (
        "water-no-get-enemy",
        "expensive-shit",
        "gentleman",
        "sorrow-tears-and-blood",
        "shakara",
        "colonial-mentality",
        "roforofo-fight",
        "lady",
        "zombie",
        "itt",
    ),
    "ebo-taylor": (
        "heaven",
        "love-and-death",
        "atwer-abroba",
        "ohiani-sua-efir",
        "victory",
        "tamfo-nyi-ekyir",
        "nga-nga",
        "yaa-amponsah",
        "aba-yaa",
        "kwaku-ananse",
    ),
    "william-onyeabor": (
        "fantastic-man",
        "when-the-going-is-smooth-and-good",
        "atomic-bomb",
        "body-and-soul",
        "good-name",
        "let-s-fall-in-love",
        "heaven-and-hell",
        "something-you-will-never-forget",
        "better-change-your-mind",
        "why-go-to-war",
    ),
}
DEFAULT_ARTIST = "tony-allen"

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]


class SongPlay(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    user_id: Annotated[int, msgspec.Meta(ge=MIN_USER, le=MAX_USER)]
    artist: Name
    song_id: Annotated[int, msgspec.Meta(ge=0, le=9)]
    song_name: Name
    event_type: Literal["song_completed"] = "song_completed"
    timestamp: Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?$")]
