"""The FlexAttention target (being written)."""
