"""Reproducible train/validation/test splits, saved beside a run."""

from __future__ import annotations

import math
from typing import Mapping, Optional

import numpy as np

from physnetjax.errors import displayed, displayed_setting, namer
from physnetjax.npz_file import NpzReadError, read_npz, write_npz

SPLITS = ("train", "valid", "test")


def check_split_size(value: float, keyword: str, names: Optional[Mapping[str, str]] = None) -> None:
    """Raise ValueError unless ``value`` (the size of split ``keyword``) is a fraction in [0, 1) or a whole number
    of frames; the message names it as ``names`` does (a command line passes its options), by default by keyword.
    """
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{displayed(keyword, names)} must be a finite number >= 0 (a fraction < 1 or a whole number "
                         f"of frames), received {value}")
    if value >= 1 and value != int(value):
        raise ValueError(f"{displayed_setting(keyword, value, names)} is neither a fraction < 1 nor a whole number "
                         f"of frames; use e.g. {displayed_setting(keyword, f'{value / 10:g}', names)} (fraction) or "
                         f"{displayed_setting(keyword, int(round(value)), names)} (frames)")


def _count(value: float, total: int, keyword: str, names: Optional[Mapping[str, str]]) -> int:
    """A fraction in [0, 1) of ``total`` frames, or a whole count ≥ 1 (1.5 is neither: ValueError)."""
    check_split_size(value, keyword, names)
    return int(round(value * total)) if value < 1 else int(value)


def random_split(num_frames: int, valid: float = 0.1, test: float = 0.1, seed: int = 0,
                 train: float | None = None, names: Optional[Mapping[str, str]] = None) -> dict[str, np.ndarray]:
    """Shuffle ``range(num_frames)`` with ``seed`` and cut it into train/valid/test.

    ``valid``, ``test`` and ``train`` are fractions (< 1) or frame counts (≥ 1);
    ``train=None`` takes all remaining frames. The same arguments always give the
    same split. Returns sorted int64 index arrays. ``names``: keyword → how the messages
    name it (a command line passes its options, e.g. ``{"valid": "--valid"}``).

    Raises:
      ValueError: a size that is neither a fraction nor a whole number, parts that need more frames than there
        are, or an empty train or valid part.
    """
    shown = namer(names)

    n_valid = _count(valid, num_frames, "valid", names)
    n_test = _count(test, num_frames, "test", names)
    n_train = num_frames - n_valid - n_test if train is None else _count(train, num_frames, "train", names)
    if num_frames - n_test < 2:
        test_part = f" besides {n_test} test frame(s) ({displayed_setting('test', f'{test:g}', names)})" if n_test else ""
        raise ValueError(f"cannot split {num_frames} frame(s): training needs at least 2{test_part}, one to train on "
                         "and one to validate with (it selects the best checkpoint); add frames"
                         + (f" or lower {shown('test')}" if n_test else ""))
    if n_valid < 1:
        raise ValueError(f"cannot split {num_frames} frames: the validation split needs at least 1 frame (it selects "
                         f"the best checkpoint); {displayed_setting('valid', f'{valid:g}', names)} gives none, give a "
                         f"frame count such as {displayed_setting('valid', 1, names)}")
    if n_train < 1 and train is None:
        raise ValueError(f"cannot split {num_frames} frames: {n_valid} validation and {n_test} test frames leave "
                         f"none to train on; lower {shown('valid')}" + (f" or {shown('test')}" if n_test else ""))
    if n_train < 1:
        raise ValueError(f"cannot split {num_frames} frames: {displayed_setting('train', f'{train:g}', names)} gives "
                         f"no training frame; give a frame count such as {displayed_setting('train', 1, names)}")
    if n_train + n_valid + n_test > num_frames:
        raise ValueError(f"cannot split {num_frames} frames into {n_train} training, {n_valid} validation and "
                         f"{n_test} test frames: they need {n_train + n_valid + n_test}; lower {shown('train')}, "
                         f"{shown('valid')} or {shown('test')}")
    order = np.random.default_rng(seed).permutation(num_frames)
    parts = np.split(order, [n_train, n_train + n_valid, n_train + n_valid + n_test])[:3]
    return {name: np.sort(part).astype(np.int64) for name, part in zip(SPLITS, parts)}


def split_with_held_out_files(num_data: int, num_valid_files: int, num_test_files: int, valid: float = 0.1,
                              test: float = 0.1, seed: int = 0, train: float | None = None,
                              names: Optional[Mapping[str, str]] = None) -> dict[str, np.ndarray]:
    """The split of frames whose validation and/or test part come from files of their own.

    The frames are the ``num_data`` frames of the data files, then the ``num_valid_files`` frames of the
    validation files, then the ``num_test_files`` of the test files (a count 0: no such files). A part with files
    is exactly their frames; a part without is a share of the data frames, ``valid``/``test`` (and ``train``) as
    :func:`random_split` takes them, which cuts the data frames. Sorted int64 index arrays.

    Raises:
      ValueError: as :func:`random_split`, for the shares of the data frames.
    """
    if num_valid_files:
        n_test = 0 if num_test_files else _count(test, num_data, "test", names)
        n_train = num_data - n_test if train is None else _count(train, num_data, "train", names)
        if n_train < 1 or n_train + n_test > num_data:
            settings = [displayed(keyword, names) for keyword, used in (("test", not num_test_files),
                                                                         ("train", train is not None)) if used]
            raise ValueError(f"cannot split the {num_data} frame(s) of the data files into {n_train} training and "
                             f"{n_test} test frames; " + (f"lower {' or '.join(settings)}" if settings
                                                          else "add frames to the data files"))
        order = np.random.default_rng(seed).permutation(num_data)
        parts = {"train": order[:n_train], "valid": np.arange(num_data, num_data + num_valid_files),
                 "test": order[n_train:n_train + n_test]}
    else:
        parts = random_split(num_data, valid, 0, seed, train, names)
    if num_test_files:
        start = num_data + num_valid_files
        parts["test"] = np.arange(start, start + num_test_files)
    return {name: np.sort(parts[name]).astype(np.int64) for name in SPLITS}


def check_split(split: dict, num_frames: int, where: str = "split") -> dict[str, np.ndarray]:
    """Validate index arrays (in range, disjoint, non-empty train/valid); returns int64 arrays."""
    out = {}
    for name in SPLITS:
        idx = np.asarray(split.get(name, np.zeros(0, np.int64))).reshape(-1)
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"{where}: {name!r} indices must be integers, received dtype {idx.dtype}")
        idx = idx.astype(np.int64)
        bad = (idx < 0) | (idx >= num_frames)
        if bad.any():
            raise ValueError(f"{where}: {name!r} has indices outside [0, {num_frames}): {idx[bad][:5].tolist()}")
        if len(np.unique(idx)) != len(idx):
            raise ValueError(f"{where}: {name!r} repeats indices")
        out[name] = idx
    for name in ("train", "valid"):
        if name not in split:
            raise ValueError(f"{where}: no {name!r} index array (a split file holds train, valid and optionally "
                             f"test; found {', '.join(sorted(split)) or 'no arrays'})")
        if out[name].size == 0:
            raise ValueError(f"{where}: {name!r} is empty")
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        common = np.intersect1d(out[a], out[b])
        if common.size:
            raise ValueError(f"{where}: {a!r} and {b!r} share frames {common[:5].tolist()}")
    return out


def save_split(path, split: dict) -> None:
    """Write the split as ``.npz`` with keys train, valid, test, to ``path`` exactly, whole or not at all
    (:func:`physnetjax.npz_file.write_npz`)."""
    write_npz(path, {name: np.asarray(split[name]) for name in SPLITS})


def load_split(path, num_frames: int) -> dict[str, np.ndarray]:
    """Read a split ``.npz`` (keys train, valid and optionally test) and validate it."""
    try:
        arrays = read_npz(path)
    except NpzReadError as error:
        raise ValueError(f"split file {path} cannot be read as .npz: {error}") from error
    return check_split(arrays, num_frames, str(path))
