"""The DuckDB engine: the reconciliation without a JVM."""
