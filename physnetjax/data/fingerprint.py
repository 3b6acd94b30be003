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
    """The data files whose content differs between two fingerprints, compared in order (the i-th file with the
    i-th), so a file moved to another path with the same content is unchanged; a file only one of them has is
    listed too. Each entry names the current path, and the recorded one where it differs."""
    old, new = list(recorded.items()), list(current.items())
    changed = []
    for k in range(max(len(old), len(new))):
        old_path, old_hash = old[k] if k < len(old) else (None, None)
        new_path, new_hash = new[k] if k < len(new) else (None, None)
        if old_hash == new_hash:
            continue
        if new_path is None:
            changed.append(f"{old_path} (no longer given)")
        elif old_path not in (None, new_path):
            changed.append(f"{new_path} (was {old_path})")
        else:
            changed.append(new_path)
    return changed
