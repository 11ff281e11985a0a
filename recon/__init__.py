"""The nightly reconciliation pipeline: command line, configuration, storage and orchestration."""

__version__ = "0.1.0"
