"""``python -m physnetjax.migrate``: new checkpoint, printed report and JSON report.

The *old* numbers in the report must be the original code's outputs stored with the
fixture (reference_outputs.npz, see tests/test_checkpoint_legacy.py for how they were
produced); they are checked here against the npz directly.
"""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from physnetjax import load_checkpoint
from physnetjax.checkpoint.legacy import read_legacy
from physnetjax.ensemble.__main__ import main as ensemble_main
from physnetjax.migrate import REPORT_FILE, main

LEGACY = Path(__file__).parent / "data" / "legacy"


@pytest.fixture(scope="module")
def synth_report(tmp_path_factory):
    new = tmp_path_factory.mktemp("migrated") / "C_synthD"
    assert main([str(LEGACY / "C_synthD"), str(new)]) == 0
    return new, json.loads((new / REPORT_FILE).read_text(encoding="utf-8"))


def test_report_lists_every_hyperparameter_and_parameter(synth_report):
    _, report = synth_report
    _, raw = read_legacy(LEGACY / "C_synthD")
    assert set(report["hyperparameters"]) == set(raw["model_attributes"])
    legacy_leaves = len(jax.tree_util.tree_leaves(raw["ema_params"]))
    assert sum(1 for r in report["parameters"] if r["source"]) == legacy_leaves
    assert all(r["target"] for r in report["parameters"])


def test_report_old_values_are_the_original_outputs(synth_report):
    _, report = synth_report
    reference = np.load(LEGACY / "C_synthD" / "reference_outputs.npz")
    rows = report["comparison"]["geometries"]
    np.testing.assert_array_equal([r["total"]["old"] for r in rows], reference["ema_energy"].astype(np.float64))
    np.testing.assert_allclose([r["zbl"]["old"] for r in rows], reference["ema_repulsion"].astype(np.float64).sum(1),
                               rtol=1e-12)
    summary = report["comparison"]["summary"]
    assert summary["network_identical"] is True
    assert summary["max_abs_delta_zbl_eV"] > 1000.0 and summary["large_change"] is True
    assert "--init-from" in summary["recommendation"]
    assert 0.0 < summary["max_charge_correction_e"] < 1.0


def test_new_checkpoint_loads_with_provenance(synth_report):
    new, report = synth_report
    model, params, metadata = load_checkpoint(new, with_metadata=True)
    assert model.config() == report["model"]
    assert metadata["legacy"]["epoch"] == 30 and metadata["legacy"]["weights"] == "ema_params"
    assert metadata["legacy"]["migration_summary"]["network_identical"] is True


def test_printed_report(tmp_path, capsys):
    """A (no pair terms), raw weights: nothing changes by design, so forces agree too."""
    assert main([str(LEGACY / "A"), str(tmp_path / "A"), "--weights", "raw"]) == 0
    printed = capsys.readouterr().out
    for text in ("Hyperparameters read", "Parameters: legacy params/<path>", "network ✓", "Recommendation"):
        assert text in printed
    summary = json.loads((tmp_path / "A" / REPORT_FILE).read_text(encoding="utf-8"))["comparison"]["summary"]
    assert summary["large_change"] is False
    # Same function differentiated by both codes in float32: the rounding is about
    # eps32 · Σ|pair contributions| (15·14 edges of O(1) eV/Å) ≈ 3e-5 eV/Å; bound 1e-4.
    assert summary["max_abs_delta_forces_eV_per_A"] < 1e-4

    (tmp_path / "A" / REPORT_FILE).write_text("{}", encoding="utf-8")  # replaced by the new run's report
    assert main([str(LEGACY / "A"), str(tmp_path / "A"), "--overwrite"]) == 0
    report = json.loads((tmp_path / "A" / REPORT_FILE).read_text(encoding="utf-8"))
    assert report["comparison"]["summary"]["large_change"] is False
    (tmp_path / "A" / "notes.txt").write_text("mine", encoding="utf-8")  # anything else is never deleted
    assert main([str(LEGACY / "A"), str(tmp_path / "A"), "--overwrite"]) == 3  # output refused (it exited 2)
    assert "notes.txt" in capsys.readouterr().err
    assert (tmp_path / "A" / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert main([str(tmp_path / "A"), str(tmp_path / "again")]) == 2  # the migrated checkpoint as OLD
    assert "is already a checkpoint of this physnetjax (config.json): nothing to migrate" in capsys.readouterr().err


def test_cli_errors(tmp_path, capsys):
    assert main([str(tmp_path / "missing"), str(tmp_path / "new")]) == 2
    assert f"{tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), str(tmp_path / "new")]) == 2
    assert "is not a legacy physnetjax checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_bad_geometries_or_a_wrong_reference_file_are_named_not_blamed_on_the_migration(tmp_path, capsys):
    """NaN positions in geometries.npz were reported as 'the migrated network does not reproduce the original's
    network energies (max |ΔE_NN| = 12.7 eV)'; a --reference file holding none of the original's outputs (here
    the geometries) was ignored: 'No outputs of the original code were given', exit 0."""
    with np.load(LEGACY / "A" / "geometries.npz") as saved:
        geometries = {key: saved[key] for key in saved.files}
    geometries["R"][2, 3] = np.nan
    np.savez(tmp_path / "nan.npz", **geometries)
    assert main([str(LEGACY / "A"), str(tmp_path / "new"), "--geometries", str(tmp_path / "nan.npz")]) == 2
    assert capsys.readouterr().err == (f"python -m physnetjax.migrate: error: geometry file {tmp_path / 'nan.npz'}: "
                                       "positions R of frame(s) [2] hold NaN or Inf; the comparison with the "
                                       "original's outputs needs the geometries they were computed on\n")
    wrong = LEGACY / "A" / "geometries.npz"
    assert main([str(LEGACY / "A"), str(tmp_path / "new"), "--reference", str(wrong)]) == 2
    assert (f"error: reference file {wrong} holds no original-code outputs of the ema_params (no 'ema_energy'; "
            "keys present: ['E_data_eV'") in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("key, cut, shape", [("ema_forces", (slice(0, 3),), "(3, 15, 3)"),
                                             ("ema_repulsion", (slice(None), slice(0, 4)), "(5, 4)")])
def test_a_truncated_reference_file_is_named_before_any_comparison(tmp_path, capsys, key, cut, shape):
    """A --reference whose forces held 3 frames beside 5 energies ended in 'internal error (IndexError ...)', exit 5;
    per-atom outputs cut to 4 atoms of 15 likewise."""
    with np.load(LEGACY / "A" / "reference_outputs.npz") as saved:
        arrays = {name: saved[name] for name in saved.files}
    arrays[key] = arrays[key][cut]
    np.savez(tmp_path / "short.npz", **arrays)
    new = tmp_path / "new"
    assert main([str(LEGACY / "A"), str(new), "--reference", str(tmp_path / "short.npz"), "--geometries",
                 str(LEGACY / "A" / "geometries.npz")]) == 2
    needed = "(5, 15, 3)" if key == "ema_forces" else "(5,) or (5, 15)"
    assert capsys.readouterr().err == (
        f"python -m physnetjax.migrate: error: reference file {tmp_path / 'short.npz'}: {key!r} has shape {shape}, "
        f"but the 5 geometries need {needed}: the file is truncated or belongs to other geometries; give their "
        "reference outputs, or leave --reference out to migrate without the comparison\n")
    assert not new.exists()


def test_weights_holding_nan_are_refused_naming_them(tmp_path, capsys):
    """A legacy checkpoint saved after its training diverged (NaN in one EMA weight) was migrated and written, the
    report recommending it for use; its first prediction failed."""
    import pickle

    _, raw = read_legacy(LEGACY / "A")
    raw["ema_params"]["params"]["Dense_0"]["0+"]["kernel"][0, 0] = np.nan
    (tmp_path / "run").mkdir()
    with open(tmp_path / "run" / "ckpt.pkl", "wb") as handle:
        pickle.dump(raw, handle)
    new = tmp_path / "new"
    assert main([str(tmp_path / "run" / "ckpt.pkl"), str(new), "--allow-pickle"]) == 2
    err = capsys.readouterr().err
    assert "the ema_params hold NaN or Inf in params/Dense_0/0+/kernel: every prediction would be NaN" in err
    assert err.endswith("migrate an earlier epoch-N directory, or --weights raw if the raw weights are finite\n")
    assert not new.exists()
    assert main([str(tmp_path / "run" / "ckpt.pkl"), str(new), "--allow-pickle", "--weights", "raw"]) == 0


def _reference_of_a(tmp_path, key: str, index: tuple, delta: float):
    """``A``'s reference_outputs.npz with ``delta`` added to ``key[index]``, written to ``tmp_path`` (its path)."""
    with np.load(LEGACY / "A" / "reference_outputs.npz") as saved:
        arrays = {name: saved[name].copy() for name in saved.files}
    arrays[key][index] += delta
    path = tmp_path / "reference_outputs.npz"
    np.savez(path, **arrays)
    return path


def test_a_network_that_does_not_reproduce_the_original_is_refused_and_nothing_is_written(tmp_path, capsys):
    """The original's network energy of one geometry raised by 1 meV (far above the 8-ulp tolerance of the
    float32 sums, ~1e-5 eV here): exit 1 with the largest difference, and no checkpoint."""
    reference = _reference_of_a(tmp_path, "energy_no_pair_terms", (3,), 1e-3)
    new = tmp_path / "new"
    assert main([str(LEGACY / "A"), str(new), "--weights", "raw", "--reference", str(reference)]) == 1
    error = capsys.readouterr().err
    assert ("the migrated network does not reproduce the original's network energies (max |ΔE_NN| = 0.001 eV); "
            f"refusing to write {new}") in error
    assert not new.exists()


def test_a_large_change_of_the_forces_alone_calls_for_fine_tuning(tmp_path, capsys):
    """Energies as the original's, one force component 0.2 eV/Å off (> 0.05 eV/Å): the summary says 'large
    change' and recommends fine-tuning; unchanged, the same model needs none (test_printed_report)."""
    reference = _reference_of_a(tmp_path, "forces", (1, 4, 2), 0.2)
    new = tmp_path / "new"
    assert main([str(LEGACY / "A"), str(new), "--weights", "raw", "--reference", str(reference)]) == 0
    summary = json.loads((new / REPORT_FILE).read_text(encoding="utf-8"))["comparison"]["summary"]
    assert summary["network_identical"] is True and summary["max_abs_delta_total_eV"] < 1e-3
    assert summary["max_abs_delta_forces_eV_per_A"] == pytest.approx(0.2, abs=1e-4)
    assert summary["large_change"] is True and "--init-from" in summary["recommendation"]


def test_overwrite_refuses_a_directory_that_is_not_a_checkpoint_before_migrating(tmp_path, capsys, monkeypatch):
    """``--overwrite`` replaces only a checkpoint: a directory of other files is refused, before the migration
    runs (no report is printed), and left as it was."""
    import physnetjax.migrate

    target = tmp_path / "results"
    target.mkdir()
    (target / "mine.txt").write_text("mine", encoding="utf-8")
    monkeypatch.setattr(physnetjax.migrate, "migrate_legacy", lambda *a, **k: pytest.fail("the migration ran"))
    assert main([str(LEGACY / "A"), str(target), "--overwrite"]) == 3  # an unusable output path
    captured = capsys.readouterr()
    assert captured.err == (f"python -m physnetjax.migrate: error: refusing to overwrite {target}: it is not a "
                            "physnetjax checkpoint\n")
    assert captured.out == ""
    assert sorted(p.name for p in target.iterdir()) == ["mine.txt"]


def test_own_geometries_are_not_compared_with_the_outputs_beside_the_checkpoint(tmp_path, capsys):
    """With --geometries, the reference_outputs.npz beside OLD (outputs on *its* geometries) was still compared,
    frame by frame with other molecules: a false 'does not reproduce' (exit 1). Now only a --reference given with
    them is compared, and one holding another number of frames is refused by name."""
    with np.load(LEGACY / "A" / "geometries.npz") as saved:
        own = {key: saved[key][:2] for key in saved.files}
    own["R"] = own["R"] + 0.05
    np.savez(tmp_path / "own.npz", **own)
    assert main([str(LEGACY / "A"), str(tmp_path / "new"), "--geometries", str(tmp_path / "own.npz")]) == 0
    report = json.loads((tmp_path / "new" / REPORT_FILE).read_text(encoding="utf-8"))
    assert report["geometry_file"] == str(tmp_path / "own.npz") and report["reference_file"] is None
    capsys.readouterr()
    reference = LEGACY / "A" / "reference_outputs.npz"
    with np.load(reference) as saved:
        frames = saved["ema_energy"].reshape(-1).shape[0]
    assert frames != 2
    assert main([str(LEGACY / "A"), str(tmp_path / "other"), "--geometries", str(tmp_path / "own.npz"),
                 "--reference", str(reference)]) == 2
    assert capsys.readouterr().err == (
        f"python -m physnetjax.migrate: error: reference file {reference} holds {frames} energies but the geometry "
        f"file {tmp_path / 'own.npz'} 2 frames: give the reference outputs of these geometries, or leave "
        "--reference out to migrate without the comparison\n")
    assert not (tmp_path / "other").exists()


def fake_run_with_checkpoint(tmp_path):
    """A training run's layout (model.json, checkpoints/epoch-0001, best -> it) around a migrated checkpoint."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "model.json").write_text("{}", encoding="utf-8")
    assert main([str(LEGACY / "A"), str(run / "checkpoints" / "epoch-0001")]) == 0
    (run / "best").symlink_to(Path("checkpoints") / "epoch-0001")
    return run


def test_overwrite_never_replaces_a_training_runs_checkpoint(tmp_path, capsys):
    """A run's ``best`` is a checkpoint, so ``--overwrite`` used to replace it (through the link) with the legacy
    model: the run's trained weights were gone and ``--resume`` then blamed an edited model.json."""
    run = fake_run_with_checkpoint(tmp_path)
    checkpoint = run / "checkpoints" / "epoch-0001"
    before = {p.relative_to(checkpoint): p.read_bytes() for p in checkpoint.rglob("*") if p.is_file()}
    capsys.readouterr()
    for new in (run / "best", checkpoint):
        assert main([str(LEGACY / "B"), str(new), "--overwrite"]) == 3
        captured = capsys.readouterr()
        assert captured.err == (f"python -m physnetjax.migrate: error: refusing to write NEW {new}: it is "
                                f"{checkpoint}, a checkpoint of the training run {run}, whose trained weights and "
                                "resume state it would replace; choose another NEW\n")
        assert captured.out == ""
    assert {p.relative_to(checkpoint): p.read_bytes() for p in checkpoint.rglob("*") if p.is_file()} == before
    assert ensemble_main(["combine", str(checkpoint), str(checkpoint), "--out", str(run / "best"),
                          "--overwrite"]) == 3
    assert "a checkpoint of the training run" in capsys.readouterr().err


@pytest.mark.parametrize("arrays, match", [
    (dict(R=np.zeros((1, 3, 3))), r"must contain Z \(M, N\) and R \(M, N, 3\); found \['R'\]"),
    (dict(Z=np.ones((1, 3), int), R=np.zeros((1, 2, 3))), r"inconsistent shapes Z \(1, 3\), R \(1, 2, 3\)"),
    (dict(Z=np.ones((2, 3), int), R=np.zeros((2, 3, 3)), Q=np.zeros(3)), r"inconsistent shapes .* Q \(3,\)"),
    (dict(Z=np.ones((2, 3), int), R=np.zeros((2, 3, 3)), N=np.array([3, 4])),
     r"N must count 1\.\.3 real atoms per frame, received \[4\] in frame\(s\) \[1\]"),
])
def test_reference_geometry_files_are_checked_and_named(tmp_path, arrays, match):
    """The geometries a migration is compared on: a file without Z or R, with shapes that disagree or atom counts
    outside the rows is one CheckpointError naming it (not a migrated network that "does not reproduce")."""
    from physnetjax.checkpoint import CheckpointError
    from physnetjax.checkpoint.report import read_geometries

    path = tmp_path / "geometries.npz"
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match=f"geometry file {path}:? .*" + match):
        read_geometries(path)


@pytest.mark.parametrize("key, index, value, where", [("ema_energy", (2,), np.nan, "geometry 2"),
                                                      ("ema_forces", (1, 4, 2), np.inf, "geometry 1"),
                                                      ("ema_repulsion", ((0, 3), 7), -np.inf, "geometries 0, 3")])
def test_a_reference_holding_nan_is_named_before_any_comparison(tmp_path, capsys, key, index, value, where):
    """A NaN in the original's EMA energy of one geometry was compared like a number: "the migrated network does not
    reproduce the original's network energies (max |ΔE_NN| = 9.54e-07 eV); refusing to write", exit 1 (a verdict
    on the migration, blaming it for a damaged reference file). Now exit 2 naming the file, key and geometries."""
    with np.load(LEGACY / "A" / "reference_outputs.npz") as saved:
        arrays = {name: saved[name].copy() for name in saved.files}
    arrays[key][index] = value
    old = tmp_path / "A"  # A with this reference_outputs.npz beside it
    shutil.copytree(LEGACY / "A" / "epoch-30", old / "epoch-30")
    shutil.copy(LEGACY / "A" / "geometries.npz", old / "geometries.npz")
    np.savez(old / "reference_outputs.npz", **arrays)
    new = tmp_path / "new"
    assert main([str(old), str(new)]) == 2
    assert capsys.readouterr().err == (
        f"python -m physnetjax.migrate: error: reference file {old / 'reference_outputs.npz'}: {key!r} holds NaN or "
        f"Inf at {where}: reference outputs must be finite (the file is damaged, or the original model had "
        "diverged); give finite ones, or pass --geometries without --reference to migrate without the comparison\n")
    assert not new.exists()
    assert main([str(old), str(new), "--weights", "raw"]) == 0  # the raw weights' outputs are finite


def test_a_reference_of_text_is_named(tmp_path, capsys):
    """Outputs stored as strings ended in an internal error (exit 5) when compared."""
    with np.load(LEGACY / "A" / "reference_outputs.npz") as saved:
        arrays = {name: saved[name] for name in saved.files}
    arrays["ema_energy"] = arrays["ema_energy"].astype(str)
    np.savez(tmp_path / "text.npz", **arrays)
    assert main([str(LEGACY / "A"), str(tmp_path / "new"), "--reference", str(tmp_path / "text.npz"),
                 "--geometries", str(LEGACY / "A" / "geometries.npz")]) == 2
    assert capsys.readouterr().err == (f"python -m physnetjax.migrate: error: reference file {tmp_path / 'text.npz'}: "
                                       f"'ema_energy' holds {arrays['ema_energy'].dtype} values, not numbers\n")


@pytest.mark.parametrize("content, cause", [("first 100 bytes", "UnpicklingError: pickle data was truncated"),
                                            ("empty", "EOFError: Ran out of input"),
                                            ("text", "UnpicklingError: invalid load key, 'n'.")])
def test_a_truncated_or_corrupted_pickle_is_named(tmp_path, capsys, content, cause):
    """The first 100 bytes of a legacy pickle ended in "internal error (UnpicklingError: pickle data was
    truncated); please report it", exit 5."""
    import pickle

    _, raw = read_legacy(LEGACY / "A")
    data = {"first 100 bytes": pickle.dumps(raw)[:100], "empty": b"", "text": b"not a pickle"}[content]
    path = tmp_path / "trunc.pkl"
    path.write_bytes(data)
    new = tmp_path / "new"
    assert main([str(path), str(new), "--allow-pickle"]) == 2
    assert capsys.readouterr().err == (f"python -m physnetjax.migrate: error: legacy checkpoint {path} is a "
                                       f"corrupted or truncated pickle ({cause}): copy it again from where it was "
                                       "saved\n")
    assert not new.exists()


def test_a_report_the_disk_refuses_leaves_no_cut_short_file_and_says_the_checkpoint_is_complete(tmp_path, capsys,
                                                                                                monkeypatch):
    """migration_report.json was written in place: a full disk left a cut-short report (exit 2, no path named)."""
    import errno
    import os

    import physnetjax.jsonlines as jsonlines

    def refused(source, target):
        raise OSError(errno.ENOSPC, "No space left on device")

    bare = shutil.copytree(LEGACY / "A" / "epoch-30", tmp_path / "old" / "epoch-30")  # no geometries: no comparison
    monkeypatch.setattr(jsonlines.os, "replace", refused)
    assert main([str(bare), str(tmp_path / "A")]) == 3
    monkeypatch.setattr(jsonlines.os, "replace", os.replace)
    err = capsys.readouterr().err
    assert f"{tmp_path / 'A' / REPORT_FILE}: cannot be written (No space left on device" in err
    assert f"the migrated checkpoint {tmp_path / 'A'} is complete, only its report is missing" in err
    assert sorted(p.name for p in (tmp_path / "A").iterdir() if "migration" in p.name) == []
    load_checkpoint(tmp_path / "A")
