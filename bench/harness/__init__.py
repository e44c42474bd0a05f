"""The throughput harness: what runs (cases, backends), how it is timed, and where rows go."""
