"""Reading results: trial tables, learning curves, preview masks, classification predictions and insights
(read-only)."""
