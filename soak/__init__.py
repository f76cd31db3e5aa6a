"""The soak suite: the real daemon against the local stack under faults and hostile input, counted from
outside it. `python -m soak --help`; `make soak` runs the full profile."""
