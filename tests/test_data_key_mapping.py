"""Key mappings: datasets that store the PhysNet keys under other names (sGDML and rMD17 .npz, extxyz for MACE).

The reference is the same frames under the PhysNet names, read without a mapping: a mapped file must give the
identical Dataset, and what a mapping replaces must be what is read.
"""

import re
import warnings
from pathlib import Path

import ase
import ase.io
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from conftest import warnings_as_errors

from physnetjax.data import load_dataset
from physnetjax.data.dataset import DataError
from physnetjax.data.key_mapping import parse_key_mapping
from physnetjax.errors import PhysNetInputWarning
from physnetjax.eval.cli import main as eval_main
from physnetjax.train import TrainConfig, Trainer

DATA = Path(__file__).parent / "data" / "train_ethanol64.npz"
ARRAYS = ("Z", "R", "N", "E", "F", "D", "Q", "has_E", "has_F", "has_D", "has_Q")


def physnet_arrays() -> dict:
    return dict(np.load(DATA))


def assert_same_frames(mapped, reference, fields=ARRAYS, atol=0.0):
    """Equal arrays; ``atol`` 5e-9 for extxyz files, whose columns (positions, forces) carry 8 decimals."""
    for name in fields:
        np.testing.assert_allclose(getattr(mapped, name), getattr(reference, name), rtol=0, atol=atol, err_msg=name)


def test_parse_key_mapping_reads_key_name_pairs_and_names_every_mistake():
    assert parse_key_mapping(None) == {} and parse_key_mapping([]) == {}
    assert parse_key_mapping(["R=coords", " Z = nuclear_charges", "Qa=charges"]) == {
        "R": "coords", "Z": "nuclear_charges", "Qa": "charges"}
    for entries, message in [
        (["E:energies"], "key mapping 'E:energies': give PHYSNET_KEY=FILE_KEY, e.g. E=energies or F=REF_forces"),
        (["E="], "key mapping 'E=': give PHYSNET_KEY=FILE_KEY"),
        (["=energies"], "key mapping '=energies': give PHYSNET_KEY=FILE_KEY"),
        (["energy=REF_energy"], "key mapping 'energy=REF_energy': 'energy' is no PhysNet key; the keys are R, Z, N, "
                                "E, F, D, Q, S, Qa"),
        (["E=a", "E=b"], "key mapping: E is given twice (E=a, E=b)"),
        (["E=a", "F=a"], "key mapping: 'a' is given for both E and F"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_key_mapping(entries)


def test_an_sgdml_file_with_lowercase_z_reads_as_the_physnet_file(tmp_path):
    """sGDML's MD17 files: R, E (M, 1), F and the atomic numbers once, as z (n,)."""
    arrays = physnet_arrays()
    sgdml = tmp_path / "sgdml.npz"
    np.savez(sgdml, R=arrays["R"], z=arrays["Z"][0], E=arrays["E"][:, None], F=arrays["F"], name="ethanol")
    with pytest.raises(DataError, match=re.escape("missing required key 'Z' (keys present: ['E', 'F', 'R', 'name', "
                                                  "'z']); if the file holds it under another name: map them with "
                                                  "--keys PHYSNET_KEY=NAME")):
        load_dataset(sgdml)
    with warnings_as_errors():  # a key the file lacks under its own name, or mapped to itself, replaces nothing
        mapped = load_dataset(sgdml, keys={"Z": "z"})
        itself = load_dataset(DATA, keys={"E": "E", "F": "F"})
    assert_same_frames(mapped, load_dataset(DATA), ("Z", "R", "N", "E", "F", "has_E", "has_F"))
    assert not mapped.has_D.any()
    assert_same_frames(itself, load_dataset(DATA), ("Z", "R", "N", "E", "F", "has_E", "has_F"))


def test_an_rmd17_file_maps_every_key_and_its_old_labels_are_named_as_not_read(tmp_path):
    arrays = physnet_arrays()
    rmd17 = tmp_path / "rmd17.npz"
    np.savez(rmd17, coords=arrays["R"], nuclear_charges=arrays["Z"][0], energies=arrays["E"], forces=arrays["F"],
             old_energies=arrays["E"] + 1.0, old_indices=np.arange(len(arrays["E"])))
    with pytest.warns(PhysNetInputWarning, match=r"label-like keys not read: 'old_energies'"):
        mapped = load_dataset(rmd17, keys=parse_key_mapping(["R=coords", "Z=nuclear_charges", "E=energies",
                                                             "F=forces"]))
    assert_same_frames(mapped, load_dataset(DATA), ("Z", "R", "N", "E", "F", "has_E", "has_F"))


def test_a_mapped_key_replaces_the_files_own_which_is_named_and_units_still_apply(tmp_path):
    arrays = physnet_arrays()
    both = tmp_path / "both.npz"
    kcal_per_ev = 23.060547830619026  # CODATA 2018: 1 eV = 96.485332 kJ/mol, 4.184 kJ per kcal
    np.savez(both, **{**arrays, "E": np.zeros_like(arrays["E"]), "E_dft": arrays["E"] * kcal_per_ev})
    with pytest.warns(PhysNetInputWarning, match=re.escape(f"{both}: its own key(s) E are not read: the key mapping "
                                                           "E=E_dft reads other keys in their place")):
        mapped = load_dataset(both, keys={"E": "E_dft"}, energy_unit="kcal/mol", force_unit="eV/A")
    np.testing.assert_allclose(mapped.E, arrays["E"], rtol=1e-12)
    assert_same_frames(mapped, load_dataset(DATA), ("Z", "R", "N", "F", "D", "Q"))


def test_a_mapped_npz_key_the_file_lacks_is_refused_with_the_keys_it_has(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, **physnet_arrays())
    with pytest.raises(DataError, match=re.escape(f"{path}: key mapping F=grad: the file has no key 'grad' (keys "
                                                  "present: ['D', 'E', 'F', 'N', 'Q', 'R', 'Z'])")):
        load_dataset(path, keys={"F": "grad"})


def frames_for_mace(arrays, calculator_energy_shift=None):
    """The frames of ``arrays`` with REF_energy / REF_dipole / total_charge in info and REF_forces as a column; with
    ``calculator_energy_shift`` also a calculator energy (another method's) and forces that are not the labels."""
    frames = []
    for k in range(len(arrays["E"])):
        atoms = ase.Atoms(numbers=arrays["Z"][k], positions=arrays["R"][k])
        atoms.info.update(REF_energy=float(arrays["E"][k]), REF_dipole=arrays["D"][k], total_charge=float(arrays["Q"][k]))
        atoms.arrays["REF_forces"] = arrays["F"][k]
        if calculator_energy_shift is not None:
            atoms.calc = SinglePointCalculator(atoms, energy=float(arrays["E"][k]) + calculator_energy_shift,
                                               forces=np.zeros_like(arrays["F"][k]))
        frames.append(atoms)
    return frames


MACE_KEYS = {"E": "REF_energy", "F": "REF_forces", "D": "REF_dipole", "Q": "total_charge"}


def test_labels_mapped_in_an_extxyz_file_are_read_instead_of_the_calculators(tmp_path):
    arrays = physnet_arrays()
    path = tmp_path / "mace.extxyz"
    ase.io.write(path, frames_for_mace(arrays, calculator_energy_shift=5.0))
    with pytest.warns(PhysNetInputWarning, match="label-like keys not read: 'REF_energy'"):
        unmapped = load_dataset(path)  # the calculator's energy and zero forces
    np.testing.assert_array_equal(unmapped.E, arrays["E"] + 5.0)
    assert not unmapped.F.any()
    with warnings.catch_warnings():
        warnings.simplefilter("error", PhysNetInputWarning)  # every name the frames hold is read or mapped
        mapped = load_dataset(path, keys=MACE_KEYS)
    assert_same_frames(mapped, load_dataset(DATA), atol=5e-9)


def test_an_info_entry_of_a_traj_file_replaces_the_calculators_energy(tmp_path):
    """An ASE .traj keeps atoms.info and the calculator's results (not custom per-atom arrays)."""
    arrays = physnet_arrays()
    frames = frames_for_mace(arrays, calculator_energy_shift=5.0)
    for atoms, forces in zip(frames, arrays["F"]):
        atoms.calc.results["forces"] = forces
    path = tmp_path / "frames.traj"
    ase.io.write(path, frames)
    with pytest.warns(PhysNetInputWarning, match="label-like keys not read: 'REF_energy'"):
        np.testing.assert_array_equal(load_dataset(path).E, arrays["E"] + 5.0)
    mapped = load_dataset(path, keys={"E": "REF_energy", "D": "REF_dipole", "Q": "total_charge"})
    assert_same_frames(mapped, load_dataset(DATA))


def test_frames_without_a_mapped_label_have_it_masked(tmp_path):
    arrays = physnet_arrays()
    frames = frames_for_mace(arrays)
    for atoms in frames[::2]:
        del atoms.info["REF_energy"]
    path = tmp_path / "some.extxyz"
    ase.io.write(path, frames)
    mapped = load_dataset(path, keys=MACE_KEYS)
    assert mapped.has_E.tolist() == [k % 2 == 1 for k in range(len(frames))]
    np.testing.assert_array_equal(mapped.E[1::2], arrays["E"][1::2])  # info entries keep every digit
    assert mapped.has_F.all()


def test_an_ase_file_refuses_mapped_positions_and_names_where_a_missing_name_was_looked_for(tmp_path):
    path = tmp_path / "mace.extxyz"
    ase.io.write(path, frames_for_mace(physnet_arrays())[:3])
    with pytest.raises(DataError, match=re.escape(f"{path}: key mapping R=coords Z=numbers: a file read by ASE gives "
                                                  "its atoms' own positions, atomic numbers and counts; only its "
                                                  "labels E, F, D, Q, S can be mapped")):
        load_dataset(path, keys={"R": "coords", "Z": "numbers", "E": "REF_energy"})
    with pytest.raises(DataError, match=re.escape(f"{path}: key mapping F=forces_dft: no frame holds it (names held: "
                                                  "info: REF_dipole, REF_energy, total_charge; arrays: REF_forces, "
                                                  "numbers, positions; calculator results: none)")):
        load_dataset(path, keys={"E": "REF_energy", "F": "forces_dft"})


def test_the_trainer_reads_its_data_through_the_setting_which_is_checked_as_the_option_names_it(tmp_path):
    with pytest.raises(ValueError, match=re.escape("--keys: key mapping 'Z:z': give PHYSNET_KEY=FILE_KEY")):
        TrainConfig(keys=["Z:z"], names={"keys": "--keys"})
    arrays = physnet_arrays()
    sgdml = tmp_path / "sgdml.npz"
    np.savez(sgdml, R=arrays["R"], z=arrays["Z"][0], E=arrays["E"], F=arrays["F"])
    settings = dict(features=8, max_degree=0, num_iterations=1, num_basis_functions=4, valid=8, test=8, progress=False)
    (tmp_path / "run").mkdir()
    trainer = Trainer(TrainConfig(data=[str(sgdml)], keys=["Z=z"], out=str(tmp_path / "run"), **settings),
                      tmp_path / "run", resuming=False)
    assert_same_frames(trainer.dataset, load_dataset(DATA), ("Z", "R", "N", "E", "F"))


def test_eval_with_keys_reports_what_the_physnet_file_gives(tmp_path, capsys):
    arrays = physnet_arrays()
    rmd17 = tmp_path / "rmd17.npz"
    np.savez(rmd17, coords=arrays["R"], nuclear_charges=arrays["Z"], energies=arrays["E"], forces=arrays["F"])
    plain = tmp_path / "plain.npz"
    np.savez(plain, **{key: arrays[key] for key in ("R", "Z", "E", "F")})
    def report(path) -> str:
        return re.sub(r"in [0-9.]+ s", "in T s", capsys.readouterr().out.replace(str(path), "FILE"))

    assert eval_main(["--data", str(plain), "--worst", "0"]) == 0
    expected = report(plain)
    assert eval_main(["--data", str(rmd17), "--worst", "0", "--keys", "R=coords", "Z=nuclear_charges", "E=energies",
                      "F=forces"]) == 0
    assert report(rmd17) == expected and "data: 64 frames, up to 9 atoms, elements [1, 6, 8], labels E,F\n" in expected
    assert eval_main(["--data", str(rmd17), "--keys", "E=energies", "E=forces"]) == 2
    assert capsys.readouterr().err == ("python -m physnetjax.eval: error: key mapping: E is given twice (E=energies, "
                                       "E=forces)\n")


def test_evals_predictions_file_read_back_through_keys_gives_the_same_report(tmp_path, capsys):
    """--write-predictions keeps the reference labels as REF_energy, REF_forces, REF_dipole, REF_charge beside the
    model's results: mapped back, they are the labels the first evaluation compared with."""
    predictions = tmp_path / "predictions.extxyz"
    assert eval_main(["--data", str(DATA), "--worst", "0", "--write-predictions", str(predictions)]) == 0
    first = capsys.readouterr().out
    assert eval_main(["--data", str(predictions), "--worst", "0", "--keys", "E=REF_energy", "F=REF_forces",
                      "D=REF_dipole", "Q=REF_charge"]) == 0
    again = capsys.readouterr().out

    def table(report: str) -> str:
        kept = report.split("\n\nwritten:")[0].rstrip("\n")
        return re.sub(r"in [0-9.]+ s", "in T s", kept).replace(str(predictions), "FILE")

    assert table(again) == table(first.replace(str(DATA), "FILE")) and "energy" in table(first)
