"""The central side's own package: what runs beside the collector (hall board, reports)."""
