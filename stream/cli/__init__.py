"""The `segments` command."""
