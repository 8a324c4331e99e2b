"""Ingest: landed files -> canonical rows -> validated, deduplicated lake versions."""
