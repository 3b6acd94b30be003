"""The run directory's ``state.json``: settings and the summaries of the finished rounds.

It is rewritten atomically (temporary file + ``os.replace``) only after a round is
completely done, so it always names exactly the rounds whose directories are whole;
a ``round-NNN/`` directory that it does not list is an interrupted round.
"""

from __future__ import annotations

import json
from pathlib import Path

from physnetjax.errors import OutputPathError, PhysNetInputError
from physnetjax.jsonlines import write_json

STATE_VERSION = 1
STATE_NAME = "state.json"


def round_dir(run_dir, index: int) -> Path:
    """``RUN_DIR/round-NNN``."""
    return Path(run_dir) / f"round-{index:03d}"


def check_run_directory(run_dir: Path) -> None:
    """Raises OutputPathError when ``run_dir`` exists and is no directory (a new run directory may be missing)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputPathError(f"--out {run_dir} exists and is not a directory: give the run directory (a new one "
                              "starts a run, an existing one resumes it)")


def read_state(run_dir) -> dict | None:
    """The state of ``run_dir`` or None when no round has been started there.

    Raises:
      OutputPathError: ``run_dir`` is a file.
      PhysNetInputError: its state file is not JSON of the layout :func:`write_state` writes
        (edited or damaged), or of another state version.
    """
    run_dir = Path(run_dir)
    check_run_directory(run_dir)
    path = run_dir / STATE_NAME
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        state, problem = None, f"not valid JSON ({error})"
    else:
        problem = "JSON of another layout"
    if not (isinstance(state, dict) and isinstance(state.get("settings"), dict)
            and isinstance(state.get("rounds"), list)):
        raise PhysNetInputError(f"{path} cannot be resumed from: it is {problem}, where the loop writes an object "
                                "with 'version', 'settings' (an object) and 'rounds' (a list) after each round; it "
                                "was edited or damaged: restore it, or start afresh in another --out")
    if state.get("version") != STATE_VERSION:
        raise PhysNetInputError(f"{path}: state version {state.get('version')!r}, this physnetjax reads "
                                f"{STATE_VERSION}")
    return state


def write_state(run_dir, settings: dict, rounds: list) -> None:
    """Replace ``RUN_DIR/state.json`` with ``{"version", "settings", "rounds"}`` in one step."""
    write_json(Path(run_dir) / STATE_NAME, {"version": STATE_VERSION, "settings": settings, "rounds": rounds})
