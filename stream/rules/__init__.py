"""Segment definitions: bounded loading (bounded_yaml), what a definition may read (attributes), the
compiler into typed condition nodes (compiler) over the compiled tests (predicates), the catalog of
a segments file (catalog), its errors (problems), and the explanation of a verdict (explanation).
Pure: reads the model, no I/O beyond reading a definitions file."""
