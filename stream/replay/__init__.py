"""The reference driver: the engine over JSON lines, in file order."""
