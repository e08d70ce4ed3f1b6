"""`make bench`: API calls, state transitions and time of rotations in the sandbox (docs/benchmarks.md)."""
