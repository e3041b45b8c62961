"""Synthetic shopping-log rows.

* :func:`generate_shop_rows` makes an endless stream of rows shaped like the Tmall "Double 11"
  log:

  - **Shoppers come back.** Rows come from a few visits at a time, interleaved; a visit is one
    shopper browsing 2-25 items of 1-3 categories at one or two merchants per category. Half of
    the visits are by a new shopper, the rest by one seen before. A shopper keeps one gender,
    age range and province.
  - **Who.** Gender: ~62% female (0), ~26% male (1), the rest unknown (2) or empty (kept close
    to these shares even in a short stream). Age range 1-8 weighted towards 25-34 (3, 4); 0
    (unknown) or empty for ~15%. Province: one of the 34 provincial-level regions, by English
    name ("Zhejiang", "Inner Mongolia"), weighted towards the populous coastal ones.
  - **What.** Actions: ~87.5% clicks (0), ~1.2% add to cart (1), ~5.8% purchases (2), ~5.5%
    favourites (3). Popular categories are browsed far more than the long tail; a merchant
    sells mostly one brand, and ~3% of merchants have no brand (empty ``brand_id``).
  - **When.** ``month``/``day`` from May 11 to November 12, as in the log, ~15% of the rows on
    November 11.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from clickstream.simulators.shop_log import ShopRow

PROVINCES: dict[str, int] = {  # province: weight (roughly online shoppers)
    "Guangdong": 120,
    "Zhejiang": 85,
    "Jiangsu": 80,
    "Shanghai": 55,
    "Beijing": 50,
    "Shandong": 50,
    "Fujian": 40,
    "Henan": 35,
    "Sichuan": 35,
    "Hubei": 30,
    "Hunan": 25,
    "Hebei": 25,
    "Anhui": 22,
    "Liaoning": 20,
    "Shaanxi": 18,
    "Chongqing": 16,
    "Jiangxi": 15,
    "Tianjin": 14,
    "Guangxi": 14,
    "Yunnan": 12,
    "Shanxi": 11,
    "Heilongjiang": 11,
    "Jilin": 9,
    "Inner Mongolia": 8,
    "Guizhou": 8,
    "Xinjiang": 6,
    "Gansu": 5,
    "Hainan": 4,
    "Ningxia": 2,
    "Qinghai": 2,
    "Tibet": 1,
    "Hong Kong": 3,
    "Macao": 1,
    "Taiwan": 2,
}
GENDER_WEIGHTS: dict[int | None, int] = {0: 62, 1: 26, 2: 8, None: 4}
ACTION_WEIGHTS: dict[int, int] = {0: 875, 1: 12, 2: 58, 3: 55}
AGE_WEIGHTS: dict[int | None, int] = {
    None: 4, 0: 8, 1: 1, 2: 12, 3: 27, 4: 21, 5: 12, 6: 10, 7: 3, 8: 2
}  # fmt: skip
DAYS: dict[int, range] = {  # month: its days in the log (May 11 to November 12)
    5: range(11, 32),
    6: range(1, 31),
    7: range(1, 32),
    8: range(1, 32),
    9: range(1, 31),
    10: range(1, 32),
    11: range(1, 13),
}
DOUBLE_11_SHARE = 0.15
MAX_USER_ID, MAX_ITEM_ID, MAX_CAT_ID = 424_170, 1_113_166, 1_671
MAX_MERCHANT_ID, MAX_BRAND_ID = 4_995, 8_477
NO_BRAND_SHARE = 0.03
NEW_SHOPPER_SHARE = 0.5
CONCURRENT_VISITS = 8
_POOL = 5_000
T = TypeVar("T")


@dataclass(slots=True, eq=False)
class _Shopper:
    user_id: int
    gender: int | None
    age_range: int | None
    province: str | None
    favourites: list[int] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class _Visit:
    shopper: _Shopper
    month: int
    day: int
    shelves: list[tuple[int, int]]  # (category, merchant)
    rows_left: int


class _Shop:
    """The catalogue (categories, merchants, brands, items), made up as it is browsed."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        popular = rng.sample(range(1, MAX_CAT_ID + 1), 400)
        self.categories = popular
        self.category_weights = [1.0 / (rank + 3) for rank in range(len(popular))]  # Zipf-like
        self.merchants: dict[int, list[int]] = {}  # category: its merchants
        self.brands: dict[int, list[int | None]] = {}  # merchant: its brands (mostly one)
        self.items: dict[tuple[int, int], list[int]] = {}  # (category, merchant): items

    def category(self) -> int:
        return self.rng.choices(self.categories, self.category_weights)[0]

    def merchant(self, category: int) -> int:
        rng = self.rng
        merchants = self.merchants.get(category)
        if merchants is None:
            count = rng.randint(3, 12)
            merchants = self.merchants[category] = rng.sample(range(1, MAX_MERCHANT_ID + 1), count)
        return merchants[min(int(rng.expovariate(0.5)), len(merchants) - 1)]  # a few lead

    def brand(self, merchant: int) -> int | None:
        rng = self.rng
        brands = self.brands.get(merchant)
        if brands is None:
            main = None if rng.random() < NO_BRAND_SHARE else rng.randint(1, MAX_BRAND_ID)
            other = (
                rng.randint(1, MAX_BRAND_ID) if main is not None and rng.random() < 0.2 else main
            )
            brands = self.brands[merchant] = [main] * 9 + [other]
        return rng.choice(brands)

    def item(self, category: int, merchant: int) -> int:
        rng = self.rng
        items = self.items.get((category, merchant))
        if items is None:
            count = rng.randint(3, 15)
            items = self.items[category, merchant] = [
                rng.randint(1, MAX_ITEM_ID) for _ in range(count)
            ]
        return rng.choice(items)


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.shop = _Shop(self.rng)
        self.known: deque[_Shopper] = deque(maxlen=_POOL)
        self.used: set[int] = set()
        self.visits: list[_Visit] = []
        self.provinces, self.province_weights = list(PROVINCES), list(PROVINCES.values())
        self.months = list(DAYS)
        self.month_weights = [len(days) for days in DAYS.values()]
        total = sum(GENDER_WEIGHTS.values())
        self.gender_share = {gender: weight / total for gender, weight in GENDER_WEIGHTS.items()}
        self.gender_rows = dict.fromkeys(GENDER_WEIGHTS, 0)
        self.row_count = 0

    def rows(self) -> Iterator[ShopRow]:
        rng, shop, visits = self.rng, self.shop, self.visits
        actions, action_weights = list(ACTION_WEIGHTS), list(ACTION_WEIGHTS.values())
        while True:
            while len(visits) < CONCURRENT_VISITS:
                visits.append(self.visit())
            index = rng.randrange(len(visits))
            visit = visits[index]
            category, merchant = rng.choice(visit.shelves)
            shopper = visit.shopper
            self.gender_rows[shopper.gender] += 1
            self.row_count += 1
            yield ShopRow(
                user_id=shopper.user_id,
                item_id=shop.item(category, merchant),
                cat_id=category,
                merchant_id=merchant,
                brand_id=shop.brand(merchant),
                month=visit.month,
                day=visit.day,
                action=rng.choices(actions, action_weights)[0],
                age_range=shopper.age_range,
                gender=shopper.gender,
                province=shopper.province,
            )
            visit.rows_left -= 1
            if visit.rows_left <= 0:
                visits[index] = visits[-1]
                visits.pop()

    def shopper(self) -> _Shopper:
        """A returning shopper, or (``NEW_SHOPPER_SHARE`` of the time) a new one."""
        rng = self.rng
        if self.known and rng.random() >= NEW_SHOPPER_SHARE:
            busy = {visit.shopper.user_id for visit in self.visits}
            for _ in range(4):  # one visit at a time per shopper
                known = rng.choice(self.known)
                if known.user_id not in busy:
                    return known
        if len(self.used) >= MAX_USER_ID // 2:  # endless runs: ids may come back after a while
            self.used.clear()
        user_id = rng.randint(1, MAX_USER_ID)
        while user_id in self.used:
            user_id = rng.randint(1, MAX_USER_ID)
        self.used.add(user_id)
        gender = self.gender()
        age_range = _pick(rng, AGE_WEIGHTS)
        province = None if rng.random() < 0.005 else _pick(rng, PROVINCES)
        shopper = _Shopper(user_id, gender, age_range, province)
        shopper.favourites = [self.shop.category() for _ in range(rng.randint(2, 5))]
        self.known.append(shopper)
        return shopper

    def gender(self) -> int | None:
        """Half of the time the gender furthest below its share of the rows so far: shoppers
        come back, so a few busy ones would otherwise skew the shares of a short stream."""
        if self.row_count == 0 or self.rng.random() < 0.5:
            return _pick(self.rng, GENDER_WEIGHTS)
        rows, share = self.row_count, self.gender_share
        return max(share, key=lambda gender: share[gender] - self.gender_rows[gender] / rows)

    def visit(self) -> _Visit:
        rng = self.rng
        shopper = self.shopper()
        if rng.random() < DOUBLE_11_SHARE:
            month, day = 11, 11
        else:
            month = rng.choices(self.months, self.month_weights)[0]
            day = rng.choice(DAYS[month])
        shelves = []
        for _ in range(rng.choice((1, 1, 2, 2, 3))):
            category = rng.choice(shopper.favourites) if rng.random() < 0.6 else None
            category = category or self.shop.category()
            for _ in range(rng.choice((1, 1, 1, 2))):
                shelves.append((category, self.shop.merchant(category)))
        rows = min(2 + int(rng.expovariate(1 / 6)), 25)
        return _Visit(shopper, month, day, shelves, rows)


def generate_shop_rows(seed: int | None = None) -> Iterator[ShopRow]:
    """An endless stream of realistic log rows (see the module docstring); the same for a seed."""
    if seed is None:
        seed = random.SystemRandom().getrandbits(63)
    return _Generator(seed).rows()


def _pick(rng: random.Random, weights: dict[T, int]) -> T:
    return rng.choices(tuple(weights), tuple(weights.values()))[0]
