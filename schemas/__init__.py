"""The record shapes of DESIGN.md, defined once: column lists, Spark and Arrow schemas, CSV writers."""
