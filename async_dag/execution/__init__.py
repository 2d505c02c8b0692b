"""Execution across processes and clusters: batches shipped to any Executor."""
