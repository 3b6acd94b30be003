"""JSON Lines run logs: one JSON object per line, each line flushed as it is written.

Training writes ``RUN_DIR/metrics.jsonl`` (one line per epoch, the columns of
``metrics.csv``), MD writes ``<trajectory>.jsonl`` (one line per saved frame), so
external trackers can follow a run with ``tail -f`` or any JSON Lines reader.
Values are JSON numbers, or ``null`` where a value is missing or not finite (JSON
has no NaN). A resumed run first rewrites the file with the lines it keeps (written
to a temporary file and moved into place), then appends.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
from pathlib import Path
from typing import Iterable, Iterator

from physnetjax.errors import FULL_DISK_ERRNOS, PhysNetInputError, write_failure


def json_value(value):
    """A JSON-ready scalar: NumPy scalars → Python, NaN/Inf → None."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _line(record: dict) -> str:
    return json.dumps({key: json_value(value) for key, value in record.items()}, allow_nan=False) + "\n"


def replace_text(path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step (:func:`written_whole`).

    Raises:
      OutputWriteError: the write failed (disk full, ...): the temporary file is removed and ``path`` is unchanged.
    """
    with written_whole(path, also_kept="") as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)  # newline="": the text's own line ends (csv's \r\n)


@contextlib.contextmanager
def written_whole(path, also_kept: str = "the outputs written before it are complete") -> Iterator[Path]:
    """A temporary sibling of ``path`` (``.NAME.partial`` and the same suffix) to write, moved onto ``path`` once the
    block ends, so ``path`` is never left cut short: a write the file system refuses (disk full) removes it and
    raises an OutputWriteError naming ``path`` (whose earlier content, if any, is unchanged; ``also_kept`` adds what
    else is complete). A block that writes nothing (a plot with nothing to draw) leaves ``path`` alone."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial{path.suffix}")
    try:
        yield tmp
        if tmp.exists():
            os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        if error.errno not in FULL_DISK_ERRNOS and error.errno != errno.EIO:
            raise
        kept = "its previous content is unchanged" if path.exists() else "it was not created"
        raise write_failure(path, error, kept + (f"; {also_kept}" if also_kept else "")) from error
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def start_log(path, records: Iterable[dict] = ()) -> None:
    """Create or replace ``path`` holding ``records`` (atomically: temporary file, then ``os.replace``)."""
    replace_text(path, "".join(_line(record) for record in records))


def write_json(path, obj) -> None:
    """Replace ``path`` with ``obj`` as indented JSON in one step (temporary file, then ``os.replace``)."""
    replace_text(path, json.dumps(obj, indent=2) + "\n")


EACH_COMPLETE = "it holds the records written before, each complete"


def append_record(path, record: dict, kept: str = EACH_COMPLETE) -> None:
    """Append ``record`` as one line and flush it to the file (:func:`append_text`; ``kept`` for its message)."""
    append_text(path, _line(record), kept)


def append_text(path, text: str, kept: str = EACH_COMPLETE) -> None:
    """Append ``text`` (whole lines) to ``path``, unbuffered, so nothing is left to write again at close.

    Raises:
      OutputWriteError: the write failed (disk full, ...); the part that was written is cut off again, so the file
        holds whole lines only, and the message says ``kept``.
    """
    path = Path(path)
    data = memoryview(text.encode("utf-8"))
    with open(path, "ab", buffering=0) as handle:
        size = handle.seek(0, os.SEEK_END)
        try:
            while data:
                data = data[handle.write(data):]
        except OSError as error:
            if error.errno not in FULL_DISK_ERRNOS and error.errno != errno.EIO:
                raise
            cut_back(path, size)
            raise write_failure(path, error, kept) from error


def cut_back(path, size: int) -> None:
    """Truncate ``path`` to ``size`` bytes, what it held before a write that failed part-way (shortening a file
    needs no space); an error doing so is ignored (the write's own error is the one to report)."""
    try:
        os.truncate(path, size)
    except OSError:
        pass


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
