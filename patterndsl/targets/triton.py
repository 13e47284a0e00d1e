"""The Triton target (being written)."""
