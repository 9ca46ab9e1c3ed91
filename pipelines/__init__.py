"""Data pipelines: fetching videos into the store, and (later) curating clips for training."""
