"""The engine: definitions (context, errors, graph) and the run that executes them."""
