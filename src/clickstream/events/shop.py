"""Shopping-log events: one row of the seed's ``user_log.csv`` (Tmall "Double 11" log).

Columns, as in the seed: ``user_id, item_id, cat_id, merchant_id, brand_id, month, day, action,
age_range, gender, province``. ``action`` is 0 click, 1 add to cart, 2 purchase, 3 favourite;
``gender`` 0 female, 1 male, 2 unknown; ``age_range`` 1 (<18) ... 8 (>=50), 0 unknown. Any
column but ``user_id`` and ``action`` may be empty in the log (``None`` here). The replayer
adds ``timestamp``: the event time, epoch milliseconds.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

Millis = Annotated[int, msgspec.Meta(ge=0, le=32_503_680_000_000)]
Id = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]  # Spark reads bigint

COLUMNS = (
    "user_id",
    "item_id",
    "cat_id",
    "merchant_id",
    "brand_id",
    "month",
    "day",
    "action",
    "age_range",
    "gender",
    "province",
)
GENDERS = {0: "female", 1: "male", 2: "unknown"}
ACTIONS = {0: "click", 1: "cart", 2: "purchase", 3: "favourite"}


class ShopEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    user_id: Id
    item_id: Id | None = None
    cat_id: Id | None = None
    merchant_id: Id | None = None
    brand_id: Id | None = None
    month: Annotated[int, msgspec.Meta(ge=1, le=12)] | None = None
    day: Annotated[int, msgspec.Meta(ge=1, le=31)] | None = None
    action: Annotated[int, msgspec.Meta(ge=0, le=3)]
    age_range: Annotated[int, msgspec.Meta(ge=0, le=8)] | None = None
    gender: Annotated[int, msgspec.Meta(ge=0, le=2)] | None = None
    province: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    timestamp: Millis
    """Event time, epoch milliseconds (stamped by the replayer)."""
