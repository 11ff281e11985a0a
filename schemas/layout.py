"""The storage layout, defined once: where each stage publishes under ``{root}`` and how a reader knows a
folder is complete.

    raw/{channel}/{D}/        landed statements and ``_manifest.json`` (connectors.landing writes)
    standard/{channel}/{D}/   standard records, ``_manifest.json``, ``_SUCCESS`` (normalizers.publish writes)
    local/{D}/                the local order export (the order system writes)
    recon/{D}/                the reconciliation result, ``_SUCCESS`` (jobs.reconcile writes)

Paths are relative to the root, written with ``/``; the functions that look into a folder take the
storage helper (``core.storage.Storage``) as an argument and use only its reading methods.
"""

from __future__ import annotations

import datetime as dt
import posixpath

MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"
# Written next to a landed statement that normalize found damaged (truncated, totals off): the next landing
# downloads it again instead of trusting the landed copy.
REFETCH = "_refetch.json"


def raw_dir(channel: str, day: dt.date) -> str:
    return posixpath.join("raw", channel, day.isoformat())


def standard_dir(channel: str, day: dt.date) -> str:
    return posixpath.join("standard", channel, day.isoformat())


def local_dir(day: dt.date) -> str:
    return posixpath.join("local", day.isoformat())


def recon_dir(day: dt.date) -> str:
    return posixpath.join("recon", day.isoformat())


def is_published(storage, channel: str, day: dt.date) -> bool:
    """Whether standard/{channel}/{D}/ is complete (``_SUCCESS``)."""
    return storage.is_file(standard_dir(channel, day), SUCCESS)


def is_reconciled(storage, day: dt.date) -> bool:
    """Whether recon/{D}/ is complete (``_SUCCESS``)."""
    return storage.is_file(recon_dir(day), SUCCESS)


def landed_manifest(storage, channel: str, day: dt.date, *, reuse: bool = False) -> dict | None:
    """The manifest of D's landed statement if every file it lists is present with its size.

    ``reuse``: asked by a landing deciding whether to download again, which it must when normalize marked
    the landed copy damaged (``connectors.landing.mark_for_refetch``).
    """
    folder = raw_dir(channel, day)
    if not storage.is_file(folder, MANIFEST) or (reuse and storage.is_file(folder, REFETCH)):
        return None
    manifest = storage.read_json(folder, MANIFEST)
    for entry in manifest["files"]:
        if not storage.is_file(folder, entry["name"]) or storage.size(folder, entry["name"]) != entry["size"]:
            return None
    return manifest
