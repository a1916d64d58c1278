"""The pure core: records and their kinds, changes, the clock, the merge rule, sequence
numbers, times, errors, seeds, settings. It imports nothing above it."""
