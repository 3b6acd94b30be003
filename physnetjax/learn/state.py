"""The run directory's ``state.json``: settings and the summaries of the finished rounds.

It is rewritten atomically (temporary file + ``os.replace``) only after a round is
completely done, so it always names exactly the rounds whose directories are whole;
a ``round-NNN/`` directory that it does not list is an interrupted round.
"""

from __future__ import annotations

import json
from pathlib import Path

from physnetjax.jsonlines import write_json

STATE_VERSION = 1
STATE_NAME = "state.json"


def round_dir(run_dir, index: int) -> Path:
    """``RUN_DIR/round-NNN``."""
    return Path(run_dir) / f"round-{index:03d}"


def read_state(run_dir) -> dict | None:
    """The state of ``run_dir`` or None when no round has been started there."""
    path = Path(run_dir) / STATE_NAME
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"{path}: state version {state.get('version')!r}, this physnetjax reads {STATE_VERSION}")
    return state


def write_state(run_dir, settings: dict, rounds: list) -> None:
    """Replace ``RUN_DIR/state.json`` with ``{"version", "settings", "rounds"}`` in one step."""
    write_json(Path(run_dir) / STATE_NAME, {"version": STATE_VERSION, "settings": settings, "rounds": rounds})
