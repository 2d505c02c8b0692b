"""Execution across processes and clusters: batches shipped to any Executor.

``monitor=`` on these calls shows batch-level progress: workers run without a monitor,
and the calling process updates the view as batches finish (``progress``).
"""
