"""The SQLite backend: all of its driver code."""
