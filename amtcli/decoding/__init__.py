"""Model outputs -> notes: frame posteriors (frames.py)."""
