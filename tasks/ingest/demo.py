"""The built-in demo source: a synthetic shop whose users come from planted segments. Hard on purpose.

Segments differ in category taste, activity, purchase funnel and hour of day. Three pairs share their taste
exactly and differ only in how they shop (buyers vs browsers, mornings vs nights), so a segmentation that
only looks at what people like merges them. 5% of users are noise (any taste, any habit; planted segment -1).
`titles_only` writes a catalogue without categories, the way many real shops export it: items are named by
titles that carry their kind ("Organic green tea"), in a long tail of 1,000 items per kind. Deterministic by seed; written in chunks of users, so
10M+ events never sit in memory at once.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel

CATEGORIES = (
    "coffee & tea", "kitchen", "electronics", "video games", "books", "stationery",
    "home & garden", "sports", "outdoors", "beauty", "toys", "fashion",
)  # fmt: skip
ADJECTIVES = ("classic", "premium", "compact", "organic", "deluxe", "everyday", "smart", "vintage", "ultra",
              "eco", "pro", "mini")  # fmt: skip
NOUNS = {
    "coffee & tea": ("espresso beans", "green tea", "french press", "milk frother", "chai blend"),
    "kitchen": ("chef knife", "cast iron pan", "cutting board", "stand mixer", "spice rack"),
    "electronics": ("headphones", "usb charger", "bluetooth speaker", "smartwatch", "power bank"),
    "video games": ("racing game", "rpg adventure", "game controller", "strategy game", "gaming mouse"),
    "books": ("mystery novel", "cookbook", "biography", "sci-fi saga", "poetry collection"),
    "stationery": ("notebook", "fountain pen", "planner", "sketchbook", "marker set"),
    "home & garden": ("plant pot", "throw pillow", "garden hose", "scented candle", "wall clock"),
    "sports": ("yoga mat", "running shoes", "dumbbells", "water bottle", "resistance bands"),
    "outdoors": ("tent", "hiking backpack", "sleeping bag", "headlamp", "camping stove"),
    "beauty": ("face serum", "lipstick", "hand cream", "shampoo", "perfume"),
    "toys": ("building blocks", "puzzle", "plush bear", "board game", "toy car"),
    "fashion": ("scarf", "sneakers", "denim jacket", "sunglasses", "leather belt"),
}
PRICE_MEDIAN = {"coffee & tea": 12, "kitchen": 35, "electronics": 60, "video games": 45, "books": 15,
                "stationery": 8, "home & garden": 25, "sports": 30, "outdoors": 70, "beauty": 20,
                "toys": 22, "fashion": 40}  # fmt: skip


@dataclass(frozen=True)
class PlantedSegment:
    name: str
    taste: dict[str, float]  # category -> weight
    events_per_user: float  # mean number of views
    cart_rate: float  # P(add_to_cart | view)
    purchase_rate: float  # P(purchase | add_to_cart)
    peak_hour: float


COFFEE = {"coffee & tea": 0.55, "kitchen": 0.3, "books": 0.15}
GAMES = {"video games": 0.55, "electronics": 0.35, "toys": 0.1}
BOOKS = {"books": 0.55, "stationery": 0.3, "coffee & tea": 0.15}
PLANTED_SEGMENTS = (
    # Three pairs with the same taste: they differ only in activity, funnel and hour of day.
    PlantedSegment("morning coffee buyers", COFFEE, 30, 0.3, 0.75, 7),
    PlantedSegment("late-night coffee browsers", COFFEE, 70, 0.06, 0.25, 23),
    PlantedSegment("night gamers", GAMES, 70, 0.08, 0.3, 23),
    PlantedSegment("lunchtime game buyers", GAMES, 25, 0.3, 0.75, 13),
    PlantedSegment("evening readers", BOOKS, 35, 0.2, 0.5, 20),
    PlantedSegment("early-bird book buyers", BOOKS, 20, 0.35, 0.8, 6),
    # Three with a taste of their own.
    PlantedSegment("home makers", {"home & garden": 0.5, "kitchen": 0.35, "toys": 0.15}, 35, 0.22, 0.65, 13),
    PlantedSegment("weekend athletes", {"sports": 0.5, "outdoors": 0.4, "fashion": 0.1}, 30, 0.15, 0.5, 9),
    PlantedSegment("beauty & fashion browsers", {"beauty": 0.45, "fashion": 0.45, "home & garden": 0.1}, 55, 0.05, 0.3, 21),
)  # fmt: skip
NOISE = -1  # the planted segment of noise users
# The titles-only shop is a long tail, as shops that export only titles tend to be: 12,000 items, most seen by
# a handful of users, so what an item is must be read from its title more than from who bought it.
TITLES_ITEMS_PER_CATEGORY = 1000
TITLES_ACTIVITY = 0.25


class DemoConfig(BaseModel):
    """How much demo data to make, and from which seed."""

    n_users: int = 3000
    seed: int = 42
    items_per_category: int = 40
    start: str = "2024-01-01"
    days: int = 120
    chunk_users: int = 20_000
    noise_share: float = 0.05
    titles_only: bool = False
    activity: float = 1.0  # scales every segment's views per user


def demo_config(source: str) -> DemoConfig:
    """The config of a demo source: `demo`, `demo:N` (N users), `demo:titles` or `demo:N:titles` (a catalogue
    of titles only, no categories)."""
    parts = source.split(":")[1:]
    titles_only = "titles" in parts
    numbers = [p for p in parts if p != "titles"]
    if len(numbers) > 1 or (numbers and not numbers[0].isdigit()) or (numbers and int(numbers[0]) < 1):
        from tasks.ingest.sources import SourceSpecError

        raise SourceSpecError(
            f"bad demo source {source!r}: use demo, demo:N_USERS, demo:titles or demo:N_USERS:titles"
        )
    n_users = int(numbers[0]) if numbers else DemoConfig().n_users
    if titles_only:
        return DemoConfig(
            n_users=n_users, titles_only=True, items_per_category=TITLES_ITEMS_PER_CATEGORY,
            activity=TITLES_ACTIVITY,
        )  # fmt: skip
    return DemoConfig(n_users=n_users)


EVENT_FIELDS = ("event_id", "user_id", "session_id", "item_id", "event_type", "ts", "value", "quantity")

SOURCE_SPEC = """# segflow source spec for the demo shop (written by `segflow demo-data`).
name = "demo"
ground_truth = "users.csv"             # the planted segment of every user, to score segments against
timezone = "UTC"                       # the shoppers' clock: the planted hours of day are UTC

[events]
path = "events.csv"

[events.columns]
event_id = "event_id"
user_id = "user_id"
session_id = "session_id"
item_id = "item_id"
event_type = "event_type"
ts = "ts"
value = "value"
quantity = "quantity"

[items]
path = "items.csv"

[items.columns]
item_id = "item_id"
title = "title"
category = "category"
price = "price"
text = "text"

[validation.value_ranges]
purchase = [0.0, 100000.0]
"""


def make_items(config: DemoConfig) -> list[dict]:
    rng = np.random.default_rng([config.seed, 1])
    items = []
    for c, category in enumerate(CATEGORIES):
        for k in range(config.items_per_category):
            noun = NOUNS[category][k % len(NOUNS[category])]
            adjective = ADJECTIVES[(k // len(NOUNS[category]) + c) % len(ADJECTIVES)]
            title = f"{adjective.title()} {noun}"
            price = round(float(PRICE_MEDIAN[category] * rng.lognormal(0, 0.35)), 2)
            items.append({
                "item_id": f"i{c * config.items_per_category + k + 1:05d}",
                "title": title,
                "category": category,
                "price": price,
                "text": f"{title}. A {adjective} {noun} from our {category} range.",
            })  # fmt: skip
    return items


def _events_for_users(config: DemoConfig, items: list[dict], first_user: int, n_users: int, chunk: int):
    """Rows (as tuples in EVENT_FIELDS order) and ground truth for users first_user.. first_user+n_users-1."""
    rng = np.random.default_rng([config.seed, 2, chunk])
    n_cat, per_cat = len(CATEGORIES), config.items_per_category
    popularity = 1.0 / np.arange(1, per_cat + 1) ** 0.9
    popularity /= popularity.sum()
    prices = np.array([item["price"] for item in items])
    start = np.datetime64(config.start, "s")
    rows, truth = [], []
    for u in range(first_user, first_user + n_users):
        segment_index = int(rng.integers(len(PLANTED_SEGMENTS)))
        segment = PLANTED_SEGMENTS[segment_index]
        if rng.random() < config.noise_share:
            # Noise: a random taste and random habits, from no segment.
            segment_index, segment = NOISE, PlantedSegment(
                "noise", {CATEGORIES[int(c)]: 1.0 for c in rng.choice(n_cat, 3, replace=False)},
                float(rng.uniform(15, 80)), float(rng.uniform(0.03, 0.4)), float(rng.uniform(0.2, 0.9)),
                float(rng.uniform(0, 24)),
            )  # fmt: skip
        weights = np.full(n_cat, 0.02)
        for category, weight in segment.taste.items():
            weights[CATEGORIES.index(category)] += weight
        taste = rng.dirichlet(weights * 40)
        n_views = max(3, int(rng.lognormal(np.log(segment.events_per_user * config.activity), 0.35)))
        cart_rate = float(np.clip(rng.normal(segment.cart_rate, 0.03), 0.01, 0.9))
        purchase_rate = float(np.clip(rng.normal(segment.purchase_rate, 0.08), 0.05, 0.95))
        user_id = f"u{u + 1:06d}"
        truth.append((user_id, segment_index, segment.name))
        categories = rng.choice(n_cat, size=n_views, p=taste)
        ranks = rng.choice(per_cat, size=n_views, p=popularity)
        days = rng.integers(0, config.days, size=n_views)
        hours = np.mod(rng.normal(segment.peak_hour, 1.8, size=n_views), 24)
        seconds = (days * 86400 + hours * 3600).astype(np.int64)
        order = np.argsort(seconds)
        n = 0
        for v in order:
            item = int(categories[v] * per_cat + ranks[v])
            ts = start + np.timedelta64(int(seconds[v]), "s")
            session = f"{user_id}-{int(days[v])}"
            events = [("view", ts, None, None)]
            if rng.random() < cart_rate:
                cart_ts = ts + np.timedelta64(int(rng.integers(30, 600)), "s")
                events.append(("add_to_cart", cart_ts, None, None))
                if rng.random() < purchase_rate:
                    quantity = int(rng.integers(1, 4))
                    buy_ts = cart_ts + np.timedelta64(int(rng.integers(60, 1200)), "s")
                    events.append(("purchase", buy_ts, round(float(prices[item]) * quantity, 2), quantity))
            for event_type, when, value, quantity in events:
                n += 1
                rows.append((f"{user_id}-{n}", user_id, session, items[item]["item_id"], event_type,
                             str(when).replace("T", " "), value, quantity))  # fmt: skip
    return rows, truth


def write_demo_data(out_dir: Path, config: DemoConfig | None = None) -> dict[str, int]:
    """Write events.csv, items.csv, users.csv (the planted segment of every user) and source.toml."""
    config = config or DemoConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = make_items(config)
    fields = [f for f in items[0] if not (config.titles_only and f in ("category", "text"))]
    with open(out_dir / "items.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(items)
    n_events = 0
    with (
        open(out_dir / "events.csv", "w", newline="") as events_file,
        open(out_dir / "users.csv", "w", newline="") as users_file,
    ):
        events_writer, users_writer = csv.writer(events_file), csv.writer(users_file)
        events_writer.writerow(EVENT_FIELDS)
        users_writer.writerow(("user_id", "segment", "segment_name"))
        for chunk, first_user in enumerate(range(0, config.n_users, config.chunk_users)):
            n_users = min(config.chunk_users, config.n_users - first_user)
            rows, truth = _events_for_users(config, items, first_user, n_users, chunk)
            events_writer.writerows(rows)
            users_writer.writerows(truth)
            n_events += len(rows)
    spec = SOURCE_SPEC
    if config.titles_only:
        spec = spec.replace('category = "category"\n', "").replace('text = "text"\n', "")
    (out_dir / "source.toml").write_text(spec)
    return {"users": config.n_users, "items": len(items), "events": n_events}
