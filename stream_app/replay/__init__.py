"""Turn real data sets into events on the input topics (and history rows in PostgreSQL)."""
