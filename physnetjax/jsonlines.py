"""JSON Lines run logs: one JSON object per line, each line flushed as it is written.

Training writes ``RUN_DIR/metrics.jsonl`` (one line per epoch, the columns of
``metrics.csv``), MD writes ``<trajectory>.jsonl`` (one line per saved frame), so
external trackers can follow a run with ``tail -f`` or any JSON Lines reader.
Values are JSON numbers, or ``null`` where a value is missing or not finite (JSON
has no NaN). A resumed run first rewrites the file with the lines it keeps (written
to a temporary file and moved into place), then appends.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable

from physnetjax.errors import PhysNetInputError


def json_value(value):
    """A JSON-ready scalar: NumPy scalars → Python, NaN/Inf → None."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _line(record: dict) -> str:
    return json.dumps({key: json_value(value) for key, value in record.items()}, allow_nan=False) + "\n"


def start_log(path, records: Iterable[dict] = ()) -> None:
    """Create or replace ``path`` holding ``records`` (atomically: temporary file, then ``os.replace``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.writelines(_line(record) for record in records)
    os.replace(tmp, path)


def write_json(path, obj) -> None:
    """Replace ``path`` with ``obj`` as indented JSON in one step (temporary file, then ``os.replace``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def append_record(path, record: dict) -> None:
    """Append ``record`` as one line and flush it to the file."""
    with open(Path(path), "a", encoding="utf-8") as handle:
        handle.write(_line(record))
        handle.flush()


def read_log(path) -> list[dict]:
    """Every record of ``path`` ([] when it does not exist).

    Raises:
      PhysNetInputError: naming the file and line: a line that is not a JSON object (a run killed while writing
        it, or an edit), or a file that is not UTF-8 text.
    """
    path = Path(path)
    if not path.exists():
        return []
    damaged = "the file is damaged (a run killed while writing it, or edited): remove that line or move the file away"
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise PhysNetInputError(f"{path}: not a JSON Lines text file ({error}); {damaged}") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise PhysNetInputError(f"{path}, line {number}: not a JSON record ({error}); {damaged}") from None
        if not isinstance(record, dict):
            raise PhysNetInputError(f"{path}, line {number}: a JSON {type(record).__name__}, not a record "
                                    f"(object); {damaged}")
        records.append(record)
    return records
