"""Segment definitions: bounded YAML loading, validation and compilation into the conditions the
engine evaluates, the built-in catalog (catalog.yaml), and the explanation of a verdict. Pure but
for reading a segments file."""
