"""The storage helper's atomic folder swap and recovery after a killed run."""

from core.storage import Storage


def test_swap_in_replaces_a_folder_and_recover_restores_a_retired_result(tmp_path):
    storage = Storage(tmp_path.as_uri())
    storage.write_bytes(b"old", "recon", "2026-11-20", "a.csv")
    staged = storage.staging("recon", "2026-11-20")
    storage.write_bytes(b"new", staged, "a.csv")
    storage.swap_in(staged, "recon/2026-11-20")
    assert storage.read_bytes("recon", "2026-11-20", "a.csv") == b"new"
    assert storage.list("recon") == ["2026-11-20"]

    # a run killed between the two renames of swap_in: the old result is only under .retired-*
    storage.move("recon/2026-11-20", "recon/.retired-2026-11-20-abc123")
    storage.makedirs("recon/.staging-2026-11-20-def456")
    storage.recover("recon")
    assert storage.list("recon") == ["2026-11-20"]
    assert storage.read_bytes("recon", "2026-11-20", "a.csv") == b"new"

    # a retired copy beside a complete result is garbage
    storage.write_bytes(b"older", "recon", ".retired-2026-11-20-0f0f0f", "a.csv")
    storage.recover("recon")
    assert storage.list("recon") == ["2026-11-20"]


def test_paths_outside_the_root_are_refused(tmp_path):
    import pytest

    storage = Storage(tmp_path.as_uri())
    with pytest.raises(ValueError):
        storage.path("../etc/passwd")
