"""Write the demo's input, ``products.jsonl`` (next to this file): a catalogue with bad rows.

Deterministic (a fixed seed): running it again writes the same bytes. About 3% of the
rows are broken on purpose, one way each: truncated JSON, a missing field, a field of
the wrong type, a negative price, an unknown currency, a date that does not parse, a
line that is not an object. Ids are unique, so the refresh job's result never depends
on the order in which rows reach the database.

    python examples/refresh/make_products.py [ROWS] [OUTPUT]
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

ADJECTIVES = [
    "Walnut", "Oak", "Brass", "Linen", "Copper", "Slate", "Cedar", "Amber", "Ivory",
    "Cobalt", "Birch", "Granite", "Velvet", "Maple", "Onyx", "Willow",
]  # fmt: skip
THINGS = [
    "desk lamp", "side table", "bookshelf", "armchair", "floor lamp", "rug", "mirror",
    "coat rack", "stool", "bench", "wall clock", "vase", "planter", "cabinet", "tray",
    "candle holder", "throw pillow", "picture frame",
]  # fmt: skip
CURRENCIES = ["EUR", "USD", "GBP", "CHF"]


def good_row(rng: random.Random, number: int) -> dict[str, Any]:
    """One valid product row."""
    day = rng.randrange(1, 31)
    return {
        "id": f"SKU-{number:05d}",
        "name": f"{rng.choice(ADJECTIVES)} {rng.choice(THINGS)}",
        "price": round(rng.uniform(4, 900), 2),
        "currency": rng.choice(CURRENCIES),
        "stock": rng.randrange(0, 250),
        "updated_at": f"2026-11-{day:02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z",
    }


def break_row(rng: random.Random, row: dict[str, Any]) -> str:
    """Spoil a valid row in one of the ways a real feed does; return the line."""
    flaw = rng.choice(
        ["truncated", "missing", "type", "negative", "currency", "date", "not_object"]
    )
    if flaw == "truncated":
        text = json.dumps(row, separators=(",", ":"))
        return text[: rng.randrange(10, len(text) - 5)]
    if flaw == "missing":
        del row[rng.choice(["name", "price", "currency", "updated_at"])]
    elif flaw == "type":
        field, value = rng.choice([("price", "twelve"), ("stock", "many"), ("id", 1234)])
        row[field] = value
    elif flaw == "negative":
        row["price"] = -row["price"]
    elif flaw == "currency":
        row["currency"] = "XXX"
    elif flaw == "date":
        row["updated_at"] = "last tuesday"
    else:
        return json.dumps(list(row.values()))
    return json.dumps(row, separators=(",", ":"))


def main(rows: int = 3000, output: Path | None = None) -> Path:
    """Write ``rows`` lines to ``output`` (default next to this script) and return the path."""
    rng = random.Random(20261127)
    path = output if output is not None else Path(__file__).with_name("products.jsonl")
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for number in range(1, rows + 1):
            row = good_row(rng, number)
            if rng.random() < 0.03:
                out.write(break_row(rng, row) + "\n")
            else:
                out.write(json.dumps(row, separators=(",", ":")) + "\n")
    return path


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    print(main(count, target))
