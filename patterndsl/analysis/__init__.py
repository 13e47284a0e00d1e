"""The analyzer: facts about a compiled pattern computed from its structure, never
from a dense mask (docs/architecture.md, "The analyses")."""
from .counts import RowCounts, analyze_rows, connection_counts, degree_stats, row_degrees

__all__ = ["RowCounts", "analyze_rows", "connection_counts", "degree_stats", "row_degrees"]
