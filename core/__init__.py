"""What every part uses, below all of them: the error hierarchy with its exit codes (``core.errors``), the
storage helper (``core.storage``), secrets by reference (``core.secrets``), business dates (``core.dates``),
lookup of connectors and normalizers by name (``core.registry``) and the configuration's plain values
(``core.settings``, parsed by ``recon.config``). It imports only ``schemas``."""
