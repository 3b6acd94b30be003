"""Content fingerprints of data files, recorded by a run so that ``--resume`` notices changed data."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path) -> str:
    """Hex SHA-256 of the bytes of ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_fingerprint(paths) -> dict[str, str]:
    """``{path: sha256}`` for every data file of a run (paths as given)."""
    return {str(p): file_sha256(Path(p)) for p in paths}


def changed_files(recorded: dict, current: dict) -> list[str]:
    """Paths whose content differs between two fingerprints (or that appear in only one), sorted."""
    return sorted(p for p in set(recorded) | set(current) if recorded.get(p) != current.get(p))
