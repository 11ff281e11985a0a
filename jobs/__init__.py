"""Spark jobs: thin wiring of extract -> transform -> load."""
