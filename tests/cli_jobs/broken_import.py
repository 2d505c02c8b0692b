"""A job file whose import fails."""

RATE = 1 / 0
