"""Examples that use async_dag the way a real job would (not part of the package)."""
