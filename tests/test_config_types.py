"""Frame kinds (MACE's ``config_type``): read from extxyz info and an .npz key, kept through subsets and joins,
"Default" where absent, and refused when they are no name (eval's breakdown by kind: tests/test_eval.py)."""

import ase.io
import numpy as np
import pytest

from physnetjax.data import concatenate, load_dataset
from physnetjax.data.dataset import DataError

from test_frame_weights import waters


def test_kinds_are_read_from_extxyz_info_and_an_npz_key(tmp_path):
    frames = waters()
    frames[0].info["config_type"] = "bulk"
    frames[1].info["config_type"] = "surface"
    frames[2].info["config_type"] = 7  # extxyz reads config_type=7 as an int
    ase.io.write(tmp_path / "kinds.extxyz", frames)
    data = load_dataset(tmp_path / "kinds.extxyz")
    assert data.config_type.tolist() == ["bulk", "surface", "7", "Default", "Default"]
    np.savez(tmp_path / "kinds.npz", R=data.R, Z=data.Z, E=data.E, F=data.F,
             config_type=np.array(["a", "b", "a", "c", "b"]))
    from_npz = load_dataset(tmp_path / "kinds.npz")
    assert from_npz.config_type.tolist() == ["a", "b", "a", "c", "b"]
    joined = concatenate([data, from_npz.subset(np.array([3, 1]))])
    assert joined.config_type.tolist() == ["bulk", "surface", "7", "Default", "Default", "c", "b"]
    np.savez(tmp_path / "plain.npz", R=data.R, Z=data.Z, E=data.E, F=data.F)
    assert load_dataset(tmp_path / "plain.npz").config_type.tolist() == ["Default"] * 5


@pytest.mark.parametrize("kind, value, match", [
    ("extxyz", True, r"frame 2: config_type must be a name \(e.g. 'bulk'\), received True"),
    ("extxyz", "  ", r"frame 2: config_type must be a name \(e.g. 'bulk'\), received array\(\[\]"),  # as ASE reads it
    ("npz", np.arange(5.0), r"key 'config_type' must hold text \(each frame's kind, e.g. 'bulk'\), received float64"),
    ("npz", np.array(["a", "b"]), r"key 'config_type'.*shape"),
    ("npz", np.array(["a", "b", "", "c", "d"]), r"frame 2: config_type must be a name"),
])
def test_kinds_that_are_no_name_are_refused_naming_file_and_frame(tmp_path, kind, value, match):
    frames = waters()
    if kind == "extxyz":
        frames[2].info["config_type"] = value
        ase.io.write(tmp_path / "bad.extxyz", frames)
        path = tmp_path / "bad.extxyz"
    else:
        ase.io.write(tmp_path / "w.extxyz", frames)
        data = load_dataset(tmp_path / "w.extxyz")
        path = tmp_path / "bad.npz"
        np.savez(path, R=data.R, Z=data.Z, E=data.E, F=data.F, config_type=value)
    with pytest.raises(DataError, match=match) as error:
        load_dataset(path)
    assert str(path) in str(error.value)


def test_the_trainer_reports_its_validation_and_test_errors_per_kind(tmp_path):
    """Two kinds in the training data: the final summary holds each split's errors per kind, whose frame counts are
    the split's frames of that kind and whose force MAEs, weighted by their force components, give the split's."""
    import json

    from physnetjax.train import train

    from test_train import DATA, tiny_config

    with np.load(DATA) as raw:
        arrays = dict(raw)
    kinds = np.where(np.arange(len(arrays["R"])) % 3 == 0, "hot", "cold")
    np.savez(tmp_path / "kinds.npz", **arrays, config_type=kinds)
    summary = train(tiny_config(tmp_path / "run", data=[str(tmp_path / "kinds.npz")], epochs=1))
    with np.load(tmp_path / "run" / "split.npz") as split:
        parts = {name: split[name] for name in ("valid", "test")}
    counts = np.asarray(arrays["N"]) if "N" in arrays else np.count_nonzero(arrays["Z"], axis=-1)
    for name, frames in parts.items():
        per_kind = summary["config_types"][name]
        assert {kind: entry["frames"] for kind, entry in per_kind.items()} == {
            kind: int((kinds[frames] == kind).sum()) for kind in dict.fromkeys(kinds[frames].tolist())}
        weights = {kind: 3 * int(counts[frames[kinds[frames] == kind]].sum()) for kind in per_kind}
        pooled = sum(per_kind[kind]["forces_mae"] * weights[kind] for kind in per_kind) / sum(weights.values())
        assert pooled == pytest.approx(summary[name]["forces_mae"], rel=1e-6)
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())["final"]
    assert final["config_types"] == summary["config_types"]


def test_the_learning_loop_keeps_the_kinds_in_its_npz_files(tmp_path):
    """The loop writes each round's data (starting frames and new ones) to .npz and trains on that file: the starting
    frames' kinds survive, frames without one stay "Default"; a set of one kind writes no key (the kinds of the
    frames a round selects: tests/test_learn.py)."""
    import dataclasses

    from physnetjax.learn.frames import save_frames

    from test_train import DATA

    start = load_dataset(DATA).subset(np.arange(4))
    start = dataclasses.replace(start, config_type=np.array(["md", "md", "nm", "md"], dtype=object))
    grown = concatenate([start, load_dataset(DATA).subset(np.arange(4, 6))])
    save_frames(grown, tmp_path / "data.npz")
    assert load_dataset(tmp_path / "data.npz").config_type.tolist() == ["md", "md", "nm", "md", "Default", "Default"]
    save_frames(load_dataset(DATA).subset(np.arange(3)), tmp_path / "plain.npz")
    with np.load(tmp_path / "plain.npz") as written:
        assert "config_type" not in written.files
