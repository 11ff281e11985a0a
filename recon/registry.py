"""Lazy lookup of connectors and normalizers by name, with no central list.

A name is either ``"module:Class"`` (any importable class) or a short name
that maps to ``<package>.<name>``, a module that exposes exactly one entry
point under a well-known attribute (``CONNECTOR`` or ``NORMALIZER``).
Modules are imported on first use; a missing optional dependency is reported
with what to install.
"""

from __future__ import annotations

import importlib
import re

from recon.errors import ConfigError

_SHORT = re.compile(r"^[a-z][a-z0-9_]*$")
_DOTTED = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def load(name: str, *, package: str, attribute: str, conf_file: str | None = None):
    """The class registered under ``name`` for ``package`` (``connectors`` or ``normalizers``)."""
    if _DOTTED.match(name):
        module_name, attr = name.split(":")
    elif _SHORT.match(name):
        module_name, attr = f"{package}.{name}", attribute
    else:
        raise ConfigError(f"{package[:-1]} name {name!r} is neither a short name nor 'module:Class'", file=conf_file)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name or module_name.startswith(f"{exc.name}."):
            raise ConfigError(f"no {package[:-1]} named {name!r} (module {module_name} not found)",
                              file=conf_file) from exc
        raise ConfigError(f"{package[:-1]} {name!r} needs the package {exc.name!r}: pip install {exc.name}",
                          file=conf_file) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{module_name} has no {attr}", file=conf_file) from None
