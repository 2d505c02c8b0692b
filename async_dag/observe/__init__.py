"""Observation: monitors that sample a run's live counters, and logging with context."""
