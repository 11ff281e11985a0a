"""Lazy lookup of connectors and normalizers by name, with no central list.

A name is either ``"module:Class"`` (any importable class) or a short name
that maps to ``<package>.<name>``, a module that exposes exactly one entry
point under a well-known attribute (``CONNECTOR`` or ``NORMALIZER``).
Modules are imported on first use; a missing optional dependency is reported
with what to install. An unknown short name lists the short names that exist,
found by reading the package's module sources (not importing them: a module
may need a dependency this run does not).
"""

from __future__ import annotations

import importlib
import pkgutil
import re

from core.errors import ConfigError

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
            raise _unknown(f"no {package[:-1]} named {name!r} (module {module_name} not found)", name, package,
                           attribute, conf_file) from exc
        raise ConfigError(f"{package[:-1]} {name!r} needs the package {exc.name!r}: pip install {exc.name}",
                          file=conf_file) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise _unknown(f"{module_name} has no {attr}", name, package, attribute, conf_file) from None


def _unknown(message: str, name: str, package: str, attribute: str, conf_file: str | None) -> ConfigError:
    """The error for a name that is not there; a short name's error lists the short names that are."""
    known = available(package, attribute) if _SHORT.match(name) else []
    if not known:
        return ConfigError(message, file=conf_file)
    return ConfigError(f"{message}; known {package}: {', '.join(known)}", file=conf_file,
                       hint="use one of those, or name any class as 'module:Class'")


def available(package: str, attribute: str) -> list[str]:
    """The short names of ``package``: its modules whose source assigns ``attribute`` at top level."""
    assigns = re.compile(rf"^{re.escape(attribute)}\s*(:[^=\n]*)?=", re.MULTILINE)
    names = []
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if info.ispkg or not _SHORT.match(info.name):
            continue
        spec = info.module_finder.find_spec(f"{package}.{info.name}")
        try:
            source = spec.loader.get_source(spec.name) if spec and spec.loader else None
        except (ImportError, OSError):
            source = None
        if source and assigns.search(source):
            names.append(info.name)
    return sorted(names)
