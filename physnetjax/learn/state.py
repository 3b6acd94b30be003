"""The run directory's ``state.json``: settings, the summaries of the finished rounds and the SHA-256 of the data
files a resumed run reads.

It is rewritten atomically (temporary file + ``os.replace``) only after a round is
completely done, so it always names exactly the rounds whose directories are whole;
a ``round-NNN/`` directory that it does not list is an interrupted round.

``files`` maps each data file the run reads again when it resumes (``initial.npz``, ``test.npz``, every finished
round's ``data.npz``), relative to the run directory, to its SHA-256 when it was written:
:func:`check_run_files` refuses a resumed run whose files were edited, replaced or deleted since (a round-1
``data.npz`` rescaled to hartree trained on with exit 0 and test errors of 249 eV). State files written before
the record have no ``files``: nothing is checked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from physnetjax.data.fingerprint import file_sha256
from physnetjax.errors import OutputPathError, PhysNetInputError
from physnetjax.jsonlines import write_json
from physnetjax.learn.report import report_lines, report_rows

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
    problem = _layout_problem(state)
    if problem is not None:
        raise PhysNetInputError(f"{path} cannot be resumed from: {problem}; it was edited or damaged: restore it, or "
                                "start afresh in another --out")
    return state


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _layout_problem(state: dict) -> str | None:
    """What is wrong with the rounds and files of a state read from JSON, or None. Each round's summary is checked
    by making its report row and line (what a resumed run does with it, after its remaining rounds)."""
    for index, summary in enumerate(state["rounds"]):
        if not isinstance(summary, dict):
            return f"round entry {index} is a {type(summary).__name__}, not an object"
        if summary.get("round") != index:
            return f"round entry {index} says round {summary.get('round')!r}"
        try:
            report_lines(report_rows([summary]))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            return f"round entry {index} has no valid summary ({type(error).__name__}: {error})"
    files = state.get("files", {})
    if not (isinstance(files, dict) and all(isinstance(name, str) and isinstance(digest, str)
                                            and _SHA256.fullmatch(digest) for name, digest in files.items())):
        return "'files' is not an object of file names and SHA-256 digests"
    return None


def check_run_files(run_dir, state: dict) -> None:
    """Refuse to resume when a data file recorded in ``state["files"]`` is missing or differs from what the run wrote.

    Raises:
      PhysNetInputError: naming each file changed or missing.
    """
    run_dir = Path(run_dir)
    missing, changed = [], []
    for name, digest in state.get("files", {}).items():
        path = run_dir / name
        if not path.is_file():
            missing.append(name)
        elif file_sha256(path) != digest:
            changed.append(name)
    if missing or changed:
        found = ([f"{', '.join(changed)} changed since the run wrote {'them' if len(changed) > 1 else 'it'} "
                  "(SHA-256 differs)"] if changed else []) + ([f"{', '.join(missing)} missing"] if missing else [])
        raise PhysNetInputError(f"{run_dir} cannot be resumed: {'; '.join(found)}. The finished rounds trained and "
                                "tested on the files as written, and the next rounds would go on with other frames; "
                                "restore them, or start afresh in another --out")


def file_record(run_dir, names) -> dict:
    """``{name: SHA-256}`` of the files ``names`` (paths relative to ``run_dir``) as they are now."""
    return {name: file_sha256(Path(run_dir) / name) for name in names}


def write_state(run_dir, settings: dict, rounds: list, files: dict) -> None:
    """Replace ``RUN_DIR/state.json`` with ``{"version", "settings", "rounds", "files"}`` in one step."""
    write_json(Path(run_dir) / STATE_NAME,
               {"version": STATE_VERSION, "settings": settings, "rounds": rounds, "files": files})
