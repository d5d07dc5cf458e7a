"""Reading results: trial tables, learning curves, preview masks and insights (read-only)."""
