"""The demo refresh job that ``make demo`` (``main.py``) runs, with its data."""
