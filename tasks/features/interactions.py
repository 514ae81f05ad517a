"""The user-item interaction matrix: the weights of each event type, and the matrix as sparse arrays."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from pydantic import BaseModel, Field


class InteractionWeights(BaseModel):
    """How much each event type counts in the user-item matrix; `rate` events weigh their rating."""

    view: float = Field(1.0, description="Weight of a view.")
    click: float = Field(1.0, description="Weight of a click or a search.")
    add_to_cart: float = Field(3.0, alias="cart", description="Weight of an add-to-cart.")
    purchase: float = Field(5.0, description="Weight of a purchase.")
    tag: float = Field(2.0, description="Weight of a tag.")
    play: float = Field(1.0, description="Weight of a play, times ln(1 + plays).")
    like: float = Field(3.0, description="Weight of a like.")
    share: float = Field(3.0, description="Weight of a share.")
    other: float = Field(1.0, description="Weight of any other event type.")

    model_config = {"populate_by_name": True}

    def as_params(self) -> dict[str, float]:
        return {
            "w_view": self.view,
            "w_click": self.click,
            "w_cart": self.add_to_cart,
            "w_purchase": self.purchase,
            "w_tag": self.tag,
            "w_play": self.play,
            "w_like": self.like,
            "w_share": self.share,
            "w_other": self.other,
        }


# The event types the features read by name (sql/features/fct_interactions.sql, fct_user_activity.sql).
KNOWN_EVENT_TYPES = (
    "view", "click", "search", "add_to_cart", "remove_from_cart", "purchase", "return", "rate", "tag", "play",
    "like", "share",
)  # fmt: skip
# Names other shops give them (RetailRocket: addtocart, transaction), for the note's suggestion only.
EVENT_TYPE_SYNONYMS = {
    "transaction": "purchase", "order": "purchase", "buy": "purchase", "checkout": "purchase",
    "sale": "purchase", "pageview": "view", "detail": "view", "cart": "add_to_cart", "basket": "add_to_cart",
    "rating": "rate", "listen": "play", "watch": "play", "stream": "play", "favorite": "like",
    "favourite": "like", "refund": "return", "remove": "remove_from_cart", "bought": "purchase",
}  # fmt: skip


def _canonical_guess(event_type: str) -> str | None:
    """The known type an unknown name most likely means (`addtocart`, `Transaction`, `views`, `purchased`),
    or None."""
    letters = "".join(c for c in event_type.lower() if c.isalpha())
    by_letters = {known.replace("_", ""): known for known in KNOWN_EVENT_TYPES} | EVENT_TYPE_SYNONYMS
    # The name, then without a plural or past-tense ending: views, searches, viewed, liked.
    stems = [letters] + [letters[: -len(end)] for end in ("s", "es", "ed", "d") if letters.endswith(end)]
    return next((by_letters[stem] for stem in stems if stem in by_letters), None)


def event_type_notes(events: pa.Table, other_weight: float = 1.0) -> list[str]:
    """A note naming the event types the features do not know: each weighs `other` in the user-item
    matrix and counts in no stage of the funnel, which a shop whose purchases are `transaction` would not
    guess. It says what they likely mean and how to name them in the spec."""
    counts = pc.value_counts(events.column("event_type")).to_pylist() if events.num_rows else []
    unknown = sorted(
        ((row["values"], row["counts"]) for row in counts if row["values"] not in KNOWN_EVENT_TYPES),
        key=lambda pair: (-pair[1], str(pair[0])),
    )
    if not unknown:
        return []
    listed = ", ".join(f"{name} ({count:,} event{'s' if count != 1 else ''})" for name, count in unknown)
    note = (
        f"event types the features do not know: {listed}; each weighs {other_weight:g} (the weight of any "
        "other type), and counts as "
        f"no view, cart or purchase (funnel, monetary). Known: {', '.join(KNOWN_EVENT_TYPES)}."
    )
    guesses = [(name, guess) for name, _ in unknown if (guess := _canonical_guess(str(name)))]
    if guesses:
        # Ingest lowercases and trims the mapped type: the names listed are that, the file may say AddToCart.
        cases = " ".join(
            f"WHEN '{str(name).replace(chr(39), chr(39) * 2)}' THEN '{guess}'" for name, guess in guesses
        )
        note += (
            f" If they mean {', '.join(guess for _, guess in guesses)}, map them in the source spec: "
            f'event_type = "CASE lower(trim(col)) {cases} ELSE col END" (col: the column mapped now; the types '
            "listed in event_types, and [validation] ranges by type, are those after the mapping)."
        )
    return [note]


@dataclass(frozen=True)
class Interactions:
    """`fct_interactions` as sparse matrices: users x items, rows and columns in the order given."""

    users: np.ndarray
    items: np.ndarray
    matrix: sp.csr_matrix  # 1 where the user touched the item (any event, whatever its weight)
    weights: sp.csr_matrix  # the interaction weights, positive ones only

    @cached_property  # derived once: every list and the popularity read it
    def touched(self) -> sp.csr_matrix:
        """1 where the user's events with the item weigh something (not only a return or a removal from the
        cart): what segment and micro-segment lists count, as sql/segments/seg_segment_recommendations.sql
        does for the published lists. `matrix` (any event) says what a user has seen."""
        touched = self.weights.copy()
        touched.data = np.ones(len(touched.data), dtype=np.float32)
        return touched

    def user_positions(self, user_ids) -> np.ndarray:
        index = {u: i for i, u in enumerate(self.users)}
        return np.array([index.get(u, -1) for u in user_ids])


def interaction_matrix(
    frame: pl.DataFrame, users: np.ndarray | None = None, items: np.ndarray | None = None
) -> Interactions:
    """`fct_interactions` rows (user_id, item_id, weight) as sparse matrices. Rows follow `users` and columns
    `items` when given (pairs outside them are dropped); otherwise all of the frame's, in id order."""
    users = np.array(sorted(frame["user_id"].unique().to_list()), dtype=object) if users is None else users
    items = np.array(sorted(frame["item_id"].unique().to_list()), dtype=object) if items is None else items
    coded = (
        frame.select("user_id", "item_id", pl.col("weight").cast(pl.Float64).clip(lower_bound=0))
        .join(pl.DataFrame({"user_id": users.astype(str), "u": np.arange(len(users))}), on="user_id")
        .join(pl.DataFrame({"item_id": items.astype(str), "i": np.arange(len(items))}), on="item_id")
    )
    rows, columns = coded["u"].to_numpy(), coded["i"].to_numpy()
    shape = (len(users), len(items))
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, columns)), shape=shape)
    weights = sp.csr_matrix((coded["weight"].to_numpy(), (rows, columns)), shape=shape)
    weights.eliminate_zeros()
    return Interactions(users, items, matrix, weights)
