"""The MongoDB backend: all of its driver code."""
