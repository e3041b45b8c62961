"""A catalogue of made-up books: the same seed gives the same books, ids and all."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Book:
    book_id: str
    title: str
    author: str
    description: str
    price_cents: int

    @property
    def price(self) -> str:
        return f"{self.price_cents // 100}.{self.price_cents % 100:02d}"


@lru_cache(maxsize=8)
def catalogue(books: int, seed: int) -> tuple[Book, ...]:
    """``books`` books with ids ``b-0001``, ``b-0002``...; stable for a given ``seed``."""
    from faker import Faker

    fake = Faker("en_US")
    fake.seed_instance(seed)
    width = max(4, len(str(books)))
    return tuple(
        Book(
            book_id=f"b-{n:0{width}d}",
            title=fake.catch_phrase().title(),
            author=fake.name(),
            description=" ".join(fake.paragraphs(nb=3)),
            price_cents=fake.random_int(499, 4999),
        )
        for n in range(1, books + 1)
    )
