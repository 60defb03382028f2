"""Segment definitions: bounded loading, the compiler into typed condition nodes, and the
explanation of a verdict. Pure: reads the model, no I/O beyond reading a definitions file."""
