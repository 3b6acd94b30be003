"""The spin state data.generate labels with: xTB's valence electrons and orbitals decide what uhf may be."""

import re

import ase.build
import ase.io
import numpy as np
import pytest
from ase import Atoms

from conftest import warnings_as_errors

from physnetjax.data.generate import _finite_difference_hessian, generate, labels_of, unpaired_electrons
from physnetjax.errors import PhysNetInputError


def water(moments=None):
    atoms = ase.build.molecule("H2O")
    if moments is not None:
        atoms.set_initial_magnetic_moments(moments)
    return atoms


@pytest.mark.parametrize("charge,uhf,expected", [(0, None, 0), (0, 2, 2), (0, 4, 4), (1, 1, 1), (1, 5, 5), (-1, 3, 3),
                                                 (8, 0, 0)])
def test_unpaired_electrons_accepts_the_parity_of_the_electron_count(charge, uhf, expected):
    assert unpaired_electrons(water(), charge, uhf) == expected


@pytest.mark.parametrize("charge,uhf,message", [
    # main: H2O+ (9 electrons) labelled with tblite's default, no spin state stated anywhere
    (1, None, "H2O at charge 1 has 9 electrons, 7 of them in the valence shells GFN2-xTB treats, an odd number: "
              "give uhf (--uhf), the number of unpaired electrons"),
    (1, 2, "uhf 2 does not match the parity of the electrons: H2O at charge 1 has 9 electrons, 7 of them in the "
           "valence shells GFN2-xTB treats, so uhf must be odd"),
    (0, 1, "uhf 1 does not match the parity of the electrons: H2O at charge 0 has 10 electrons, 8 of them in the "
           "valence shells GFN2-xTB treats, so uhf must be even"),
    (0, -2, "uhf -2: the number of unpaired electrons must be between 0 and 4"),
    # main: accepted up to 10 (all electrons); tblite labelled uhf 6 as a 7-electron state, 8-12 as a 6-electron one
    (0, 6, "uhf 6: the number of unpaired electrons must be between 0 and 4 (H2O at charge 0 has 10 electrons, 8 of "
           "them in the valence shells GFN2-xTB treats, in 6 valence orbitals: at most 6 electrons can have one spin, "
           "so uhf <= 2 × 6 - 8)"),
    (0, 12, "uhf 12: the number of unpaired electrons must be between 0 and 4"),
    (1, 7, "uhf 7: the number of unpaired electrons must be between 0 and 5"),
    (9, None, "charge 9 leaves H2O with -1 valence electrons (GFN2-xTB treats 8 in the neutral molecule)"),
    (11, None, "charge 11 leaves H2O (10 protons) with -1 electrons"),
    (0.5, None, "charge must be a whole number of e (the molecule's total charge), received 0.5"),
])
def test_unpaired_electrons_refuses_a_spin_state_the_electrons_cannot_have(charge, uhf, message):
    with pytest.raises(ValueError) as error:
        unpaired_electrons(water(), charge, uhf)
    assert message in str(error.value)


def test_unpaired_electrons_reads_the_structure_magnetic_moments_when_uhf_is_not_given():
    assert unpaired_electrons(water([1.0, 0.0, 0.0]), 1) == 1
    assert unpaired_electrons(water([1.0, 0.0, 0.0]), 1, uhf=3) == 3
    with pytest.raises(ValueError, match=r"initial magnetic moments \(sum 2\) does not match the parity"):
        unpaired_electrons(water([1.0, 1.0, 0.0]), 1)
    with pytest.raises(ValueError, match="sum to 0.5, not a whole number of unpaired electrons"):
        unpaired_electrons(water([0.5, 0.0, 0.0]), 1)


def test_generate_labels_a_doublet_and_records_its_spin_state():
    pytest.importorskip("tblite")
    data = generate("H2O", frames=2, stride=1, equilibration_steps=0, charge=1.0, uhf=1)
    assert int(data["uhf"]) == 1 and np.all(data["Q"] == 1.0) and np.all(np.isfinite(data["E"]))
    assert "(charge 1 e, 1 unpaired electron)" in str(data["source"])
    with pytest.raises(ValueError, match="an odd number: give uhf"):
        generate("H2O", frames=2, stride=1, equilibration_steps=0, charge=1.0)


def test_unpaired_electrons_bounds_by_valence_electrons_where_orbitals_are_plenty():
    """CH4: 8 valence electrons in 8 GFN2-xTB orbitals; on main uhf 10 passed (10 electrons), tblite labelled uhf 8."""
    methane = ase.build.molecule("CH4")
    assert unpaired_electrons(methane, 0, 8) == 8
    with pytest.raises(ValueError) as error:
        unpaired_electrons(methane, 0, 10)
    assert str(error.value) == ("uhf 10: the number of unpaired electrons must be between 0 and 8 (CH4 at charge 0 has "
                                "10 electrons, 8 of them in the valence shells GFN2-xTB treats)")


def test_unpaired_electrons_takes_the_parity_of_the_valence_electrons():
    """Cerium keeps its 4f electrons in the xTB core: 3 valence electrons of 58. On main uhf 0 passed (58 is even) and
    tblite, given an odd count and uhf 0, labelled the doublet; uhf 2 passed as well and tblite refused it."""
    cerium = Atoms("Ce")
    assert unpaired_electrons(cerium, 0, 1) == 1
    with pytest.raises(ValueError, match="Ce at charge 0 has 58 electrons, 3 of them in the valence shells GFN2-xTB "
                                         "treats, an odd number: give uhf"):
        unpaired_electrons(cerium, 0)
    with pytest.raises(ValueError, match="uhf 2 does not match the parity of the electrons: .* so uhf must be odd"):
        unpaired_electrons(cerium, 0, 2)

def test_generate_labels_the_highest_spin_water_has_and_refuses_the_next_before_labelling():
    pytest.importorskip("tblite")
    data = generate("H2O", frames=1, stride=1, equilibration_steps=0, uhf=4)
    assert int(data["uhf"]) == 4 and np.all(np.isfinite(data["E"]))
    with pytest.raises(ValueError, match="uhf 6: the number of unpaired electrons must be between 0 and 4"):
        generate("H2O", frames=1, stride=1, equilibration_steps=0, uhf=6)


def test_the_learning_loops_xtb_labeller_refuses_an_odd_electron_count_by_name():
    """The active-learning labeller labels closed shells: a cation of water reached tblite, which refused the
    parity with an internal error (exit 5 at the CLI) after the round's MD."""
    pytest.importorskip("tblite")
    from physnetjax.learn.labellers import xtb_labeller

    with pytest.raises(ValueError, match=r"H2O at charge 1 has 9 electrons, 7 of them .*an odd number: give uhf"):
        xtb_labeller(charge=1.0)(ase.build.molecule("H2O"))
    assert xtb_labeller()(ase.build.molecule("H2O"))["F"].shape == (3, 3)


def test_a_failed_xtb_scf_is_a_one_line_input_error_naming_frame_method_charge_and_spin(tmp_path, capsys,
                                                                                      monkeypatch):
    """NaCl with 6 unpaired electrons: tblite's SCF does not converge. On main the CLI called its CalculationFailed an
    internal error (exit 5) and the learning loop's labeller skipped the frame with tblite's bare words."""
    pytest.importorskip("tblite")
    from ase.calculators.calculator import CalculationFailed

    from physnetjax.data.generate import main
    from physnetjax.errors import PhysNetInputError
    from physnetjax.learn import labellers

    assert main(["--molecule", "NaCl", "--uhf", "6", "--frames", "1", "--stride", "1", "--equilibration-steps", "0",
                 "--out", str(tmp_path / "salt.npz")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(r"python -m physnetjax.data.generate: error: NaCl \(Langevin MD, sampling "
                                            r"frame 1 of 1\): the GFN2-xTB SCF \(xTB, tblite\) failed at charge 0 e "
                                            r"with 6 unpaired electrons \(SCF not converged in \d+ cycles\): xTB "
                                            r"cannot converge that charge and spin state at this geometry; try another "
                                            r"uhf \(--uhf\) or charge \(--charge\)", lines[0]), lines
    assert not (tmp_path / "salt.npz").exists()

    def unconverged(atoms):
        raise CalculationFailed("SCF not converged in 250 cycles")

    monkeypatch.setattr(labellers, "labels_of", unconverged)
    salt = ase.build.molecule("NaCl")
    salt.set_initial_magnetic_moments([3.0, 3.0])
    with pytest.raises(PhysNetInputError, match=r"^ClNa geometry: the GFN2-xTB SCF \(xTB, tblite\) failed at charge 0 "
                                                r"e with 6 unpaired electrons \(SCF not converged in 250 cycles\)"):
        labellers.xtb_labeller()(salt)


def test_a_diatomic_is_sampled_without_a_numpy_warning():
    """On main ASE's ZeroRotation divided 0/0 for a diatomic's zero moment of inertia (an axis it then drops): the CLI
    printed 'warning: invalid value encountered in divide' before labelling NaCl correctly."""
    pytest.importorskip("tblite")
    with warnings_as_errors():
        data = generate("H2", frames=1, stride=1, equilibration_steps=0)
    assert np.all(np.isfinite(data["F"]))


def test_labels_are_the_raw_forces_whatever_constraint_the_sampler_attached():
    """The MD sampler attaches ASE's FixCom, whose force adjustment f − m λ (λ = Σ m f / Σ m²) gives forces with
    zero net force a net force; the labels must be the calculator's own −dE/dR."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.constraints import FixCom

    atoms = water()
    forces = np.array([[0.3, -0.2, 0.1], [-0.25, 0.1, 0.0], [-0.05, 0.1, -0.1]])  # Σ F = 0
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=forces, dipole=np.zeros(3), charges=np.zeros(3))
    atoms.set_constraint(FixCom())
    assert np.linalg.norm(atoms.get_forces().sum(axis=0)) > 0.1  # what the constraint makes of them
    np.testing.assert_array_equal(labels_of(atoms)["F"], forces)


def test_normal_mode_hessian_of_a_quadratic_energy_is_its_matrix():
    """E = ½ uᵀ K u with u the displacement from the minimum: central differences of the forces are exact, so the
    normal-mode sampler's Hessian is K (eV/Å²) to round-off, and the atoms are put back at the minimum."""
    from ase.calculators.calculator import Calculator, all_changes

    rng = np.random.default_rng(3)
    half = rng.normal(size=(9, 9))
    stiffness = half @ half.T + 9.0 * np.eye(9)

    class Quadratic(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            u = (self.atoms.positions - minimum).ravel()
            self.results = {"energy": 0.5 * u @ stiffness @ u, "forces": -(stiffness @ u).reshape(-1, 3)}

    atoms = water()
    minimum = atoms.get_positions()
    atoms.calc = Quadratic()
    hessian = _finite_difference_hessian(atoms, minimum, 0.005)
    np.testing.assert_allclose(hessian, stiffness, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(atoms.get_positions(), minimum)


def test_overlapping_atoms_are_refused_before_xtb_and_a_collision_while_sampling_is_named(tmp_path, capsys,
                                                                                         monkeypatch):
    """Two atoms on top of each other: tblite's InputError ('Too close interatomic distances found') ended the CLI
    as an internal error with a traceback (exit 5), at the start geometry or when sampling drove atoms together."""
    pytest.importorskip("tblite")
    from ase.calculators.calculator import InputError

    from physnetjax.data import generate as module
    from physnetjax.errors import PhysNetInputError

    stacked = water()
    stacked.positions[2] = stacked.positions[1] + [0.0, 0.0, 0.01]
    stacked.write(tmp_path / "stacked.xyz")
    assert module.main(["--molecule", str(tmp_path / "stacked.xyz"), "--frames", "1", "--stride", "1",
                        "--equilibration-steps", "0", "--out", str(tmp_path / "w.npz")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "stacked.xyz: atoms overlap: atoms 1-2 at 0.01 Å (below 0.1 Å)" in lines[0], lines
    assert not (tmp_path / "w.npz").exists()

    def collided(atoms):
        raise InputError("Too close interatomic distances found")

    monkeypatch.setattr(module, "labels_of", collided)
    with pytest.raises(PhysNetInputError, match=r"^H2O \(Langevin MD, sampling frame 1 of 1\): GFN2-xTB \(tblite\) "
                                                r"refused the geometry \(Too close interatomic distances found\): the "
                                                r"sampling drove atoms together; lower the temperature or the timestep"):
        generate("H2O", frames=1, stride=1, equilibration_steps=0)


def test_a_structure_files_charge_is_used_and_a_different_charge_option_warns(tmp_path):
    """Sulfate written with charge=-2 was labelled as neutral SO4 (exit 0, Q = 0, E 13.9 eV off tblite at -2): the
    command took --charge (default 0) and never the file's, unlike MD and the calculator. The file's charge is the
    default now; a --charge that differs warns and is used."""
    pytest.importorskip("tblite")
    from physnetjax.errors import PhysNetInputWarning

    dianion = ase.build.molecule("H2O")  # H2O with charge -2: a small even-electron ion, as sulfate is
    dianion.info["charge"] = -2
    ase.io.write(tmp_path / "dianion.extxyz", dianion)
    data = generate(str(tmp_path / "dianion.extxyz"), frames=1, stride=1, equilibration_steps=0)
    assert np.all(data["Q"] == -2.0) and "(charge -2 e" in str(data["source"])
    from tblite.ase import TBLite  # the reference: tblite itself at charge -2 on the stored geometry

    frame = Atoms(data["Z"][0], positions=data["R"][0].astype(np.float64))
    frame.calc = TBLite(method="GFN2-xTB", charge=-2, multiplicity=1, verbosity=0)
    assert float(data["E"][0]) == pytest.approx(frame.get_potential_energy(), abs=1e-4)  # R stored as float32
    with pytest.warns(PhysNetInputWarning, match=r"info\['charge'\] is -2 e but charge is 0 e; charge is used"):
        neutral = generate(str(tmp_path / "dianion.extxyz"), frames=1, stride=1, equilibration_steps=0, charge=0.0)
    assert np.all(neutral["Q"] == 0.0) and abs(float(neutral["E"][0]) - float(data["E"][0])) > 1.0


def test_periodic_unreadable_and_several_frame_files_and_a_single_atom_are_named(tmp_path, capsys):
    """A water molecule in a periodic 4 Å cell was labelled as the periodic system (0.19 eV and 0.19 eV/Å from the
    isolated molecule) and written without a cell, to be trained as a molecule; an unknown element, an empty file, a
    .npz and one atom with --sampling normal-modes were internal errors (exit 5); a file of several frames used its
    last one without a word."""
    from physnetjax.data.generate import main
    from physnetjax.errors import PhysNetInputWarning

    boxed = ase.build.molecule("H2O")
    boxed.cell, boxed.pbc = [4.0, 4.0, 4.0], True
    ase.io.write(tmp_path / "boxed.extxyz", boxed)
    (tmp_path / "empty.xyz").write_text("")
    (tmp_path / "unknown.xyz").write_text("1\n\nXx 0.0 0.0 0.0\n")
    np.savez(tmp_path / "frames.npz", R=np.zeros((1, 1, 3)), Z=[[1]])
    expected = {
        "boxed.extxyz": "is periodic (pbc [True, True, True]): this tool samples and labels isolated molecules",
        "empty.xyz": "ASE cannot read it: the file is empty",
        "unknown.xyz": "ASE cannot read it (KeyError",
        # main: "ASE cannot read it (UnknownFileTypeError: npz)"
        "frames.npz": "ASE cannot read it: it does not know this file format (npz); give a structure file ASE reads, "
                      "e.g. .xyz, .extxyz, .traj or .pdb, with its usual ending",
    }
    for name, message in expected.items():
        assert main(["--molecule", str(tmp_path / name), "--frames", "1", "--out", str(tmp_path / "out.npz")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"python -m physnetjax.data.generate: error: {tmp_path / name}") and message in err, err
    ase.io.write(tmp_path / "helium.xyz", Atoms("He"))
    with pytest.raises(ValueError, match=r"helium\.xyz: one atom has no vibrations to sample"):
        generate(str(tmp_path / "helium.xyz"), frames=1, sampling="normal-modes")
    ase.io.write(tmp_path / "two.extxyz", [ase.build.molecule("H2O"), ase.build.molecule("CO2")])
    pytest.importorskip("tblite")
    with pytest.warns(PhysNetInputWarning, match=r"two\.extxyz holds 2 frames: sampling starts from the last one \(frame 2\)"):
        data = generate(str(tmp_path / "two.extxyz"), frames=1, stride=1, equilibration_steps=0)
    assert data["Z"].tolist() == [[6, 8, 8]]


def test_a_failed_write_keeps_the_previous_dataset(tmp_path, monkeypatch, capsys):
    """The dataset was written in place: a write that failed (a full disk) left a truncated zip where a good file had
    been. It goes through a temporary file now."""
    import physnetjax.npz_file as npz_file
    from physnetjax.data.generate import main

    out = tmp_path / "data.npz"
    np.savez(out, E=np.arange(3.0))
    monkeypatch.setattr("physnetjax.data.generate.generate", lambda *args, **kwargs: {"E": np.zeros(2)})

    def full_disk(handle, **arrays):
        handle.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(npz_file.np, "savez_compressed", full_disk)
    assert main(["--frames", "2", "--out", str(out), "--overwrite"]) == 3
    assert capsys.readouterr().err == (f"python -m physnetjax.data.generate: error: {out}: cannot be written (No space "
                                       "left on device: free space on its file system); its previous content is "
                                       "unchanged\n")
    assert np.load(out)["E"].tolist() == [0.0, 1.0, 2.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz"]


def test_help_and_argument_errors_answer_before_jax_ase_io_or_tblite_are_imported(tmp_path):
    """main: --help took 13 s (the package root imported JAX, Flax and the model; ase.io came with the structure
    reader); the parser and the argument checks now run on NumPy alone."""
    import subprocess
    import sys

    script = ("import sys\nfrom physnetjax.data.generate import main\n"
              "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
              f"assert main(['--out', {str(tmp_path / 'd.txt')!r}]) == 2\n"
              "print(sorted(m for m in ('jax', 'flax', 'ase.io', 'tblite', 'rich') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
    assert "give a path ending in .npz" in done.stderr


def test_the_package_roots_predict_stays_the_function_once_its_module_is_imported():
    """The root imports its names on first use; importing the submodule physnetjax.predict must not rebind the
    package attribute predict to the module (an eager root's `from physnetjax.predict import predict` kept it)."""
    import types

    import physnetjax
    import physnetjax.predict  # noqa: F401

    assert not isinstance(physnetjax.predict, types.ModuleType) and physnetjax.predict.__name__ == "predict"
    assert "PhysNet" in dir(physnetjax) and physnetjax.PhysNet.__name__ == "PhysNet"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        physnetjax.nothing


class _Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_off_a_terminal_progress_is_a_line_per_phase_start_and_end_and_every_tenth_or_minute():
    """main: 10 minutes without a line (progress only with --verbose, the 2000 equilibration steps silent)."""
    import io

    from rich.console import Console

    from physnetjax.data.generate_progress import GenerateProgress

    console, clock = Console(file=io.StringIO(), force_terminal=False), _Clock()
    with GenerateProgress(console, clock) as progress:
        progress("equilibration", 0, 2000)
        for done in range(20, 2001, 20):  # 1 s a chunk: 100 s in all
            clock.now += 1.0
            progress("equilibration", done, 2000)
        for done in range(1, 301):  # 0.5 s a frame, 2 minutes for frame 101, then 0.01 s
            clock.now += 0.5 if done <= 100 else (120.0 if done == 101 else 0.01)
            progress("labelling", done, 300)
    assert console.file.getvalue().splitlines() == [
        "equilibration: 0/2000 MD steps (0%), 0 s elapsed",
        "equilibration: 200/2000 MD steps (10%), 20 MD steps/s, 10 s elapsed, ETA 1 min 30 s",
        "equilibration: 400/2000 MD steps (20%), 20 MD steps/s, 20 s elapsed, ETA 1 min 20 s",
        "equilibration: 600/2000 MD steps (30%), 20 MD steps/s, 30 s elapsed, ETA 1 min 10 s",
        "equilibration: 800/2000 MD steps (40%), 20 MD steps/s, 40 s elapsed, ETA 1 min 00 s",
        "equilibration: 1000/2000 MD steps (50%), 20 MD steps/s, 50 s elapsed, ETA 50 s",
        "equilibration: 1200/2000 MD steps (60%), 20 MD steps/s, 1 min 00 s elapsed, ETA 40 s",
        "equilibration: 1400/2000 MD steps (70%), 20 MD steps/s, 1 min 10 s elapsed, ETA 30 s",
        "equilibration: 1600/2000 MD steps (80%), 20 MD steps/s, 1 min 20 s elapsed, ETA 20 s",
        "equilibration: 1800/2000 MD steps (90%), 20 MD steps/s, 1 min 30 s elapsed, ETA 10 s",
        "equilibration: 2000/2000 MD steps (100%), 20 MD steps/s, 1 min 40 s elapsed",
        # timed from the end of the equilibration; every tenth, then a line after a minute without one
        "labelling: 1/300 frames (0%), 2 frames/s, 0 s elapsed, ETA 2 min 30 s",
        "labelling: 30/300 frames (10%), 2 frames/s, 15 s elapsed, ETA 2 min 15 s",
        "labelling: 60/300 frames (20%), 2 frames/s, 30 s elapsed, ETA 2 min 00 s",
        "labelling: 90/300 frames (30%), 2 frames/s, 45 s elapsed, ETA 1 min 45 s",
        "labelling: 101/300 frames (34%), 0.594 frames/s, 2 min 50 s elapsed, ETA 5 min 35 s",
        # the tenths of the last 2 s pass within 5 s of a line: only the end is said
        "labelling: 300/300 frames (100%), 1.74 frames/s, 2 min 52 s elapsed",
    ]


def test_on_a_terminal_progress_is_a_bar_per_phase_with_its_rate_and_eta():
    import io

    from rich.console import Console

    from physnetjax.data.generate_progress import GenerateProgress

    console, clock = Console(file=io.StringIO(), force_terminal=True, width=140), _Clock()
    with GenerateProgress(console, clock) as progress:
        progress("relaxation", 0, None)
        clock.now += 2.0
        progress("relaxation", 12, 12)
        clock.now += 2.0
        progress("Hessian", 18, 36)
    shown = console.file.getvalue()
    assert "relaxation" in shown and "12/12" in shown and "6 BFGS steps/s, 2 s elapsed" in shown
    assert "18/36" in shown and "force calls  9 force calls/s, 2 s elapsed, ETA 2 s" in shown


def test_generate_reports_the_equilibration_and_each_labelled_frame_and_keeps_its_trajectory():
    """The equilibration runs a stride at a time to be reported; it continues the trajectory as one run did: the
    frames after 6 equilibration steps are frames 3.. of a run without them."""
    pytest.importorskip("tblite")
    reports = []
    data = generate("H2O", frames=3, stride=2, equilibration_steps=5, temperature=300.0,
                    progress=lambda *report: reports.append(report))
    assert reports == [("equilibration", 0, 5), ("equilibration", 2, 5), ("equilibration", 4, 5),
                       ("equilibration", 5, 5), ("labelling", 1, 3), ("labelling", 2, 3), ("labelling", 3, 3)]
    assert int(data["frames_requested"]) == 3 and data["E"].shape == (3,)
    after = generate("H2O", frames=2, stride=3, equilibration_steps=6, temperature=300.0)
    whole = generate("H2O", frames=4, stride=3, equilibration_steps=0, temperature=300.0)
    np.testing.assert_array_equal(after["R"], whole["R"][2:])


def test_normal_mode_sampling_reports_its_relaxation_and_hessian():
    pytest.importorskip("tblite")
    reports = []
    generate("H2O", frames=2, sampling="normal-modes", progress=lambda *report: reports.append(report))
    phases = [phase for phase, _, _ in reports]
    assert phases.index("relaxation") < phases.index("Hessian") < phases.index("labelling")
    relaxation = [report for report in reports if report[0] == "relaxation"]
    assert relaxation[0] == ("relaxation", 0, None) and relaxation[-1][1] == relaxation[-1][2]
    assert [report for report in reports if report[0] == "Hessian"] == [("Hessian", 2 * k, 18) for k in range(10)]


def test_the_command_shows_progress_unless_told_not_to(tmp_path, capsys):
    pytest.importorskip("tblite")
    from physnetjax.data.generate import main

    options = ["--molecule", "H2O", "--frames", "2", "--stride", "2", "--equilibration-steps", "2", "--out",
               str(tmp_path / "d.npz")]
    assert main(options) == 0
    captured = capsys.readouterr()
    assert captured.out == f"wrote {tmp_path / 'd.npz'}: 2 frames\n"
    assert [line.split(":")[0] for line in captured.err.splitlines()] == ["equilibration", "equilibration",
                                                                         "labelling", "labelling"]
    assert main([*options, "--no-progress", "--overwrite"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("interrupt,code,said", [(KeyboardInterrupt, 130, "interrupted"),
                                                 (None, 143, "terminated (SIGTERM)")])
def test_an_interrupt_writes_the_frames_labelled_so_far_as_a_loadable_partial_set(tmp_path, monkeypatch, capsys,
                                                                                   interrupt, code, said):
    """main: SIGTERM after minutes of labelling ended with 'terminated (SIGTERM)' and nothing written."""
    pytest.importorskip("tblite")
    import physnetjax.data.generate as generate_module
    from physnetjax.cli_errors import Terminated
    from physnetjax.data import load_npz

    calls = []

    def interrupted_on_the_third_frame(atoms):
        calls.append(1)
        if len(calls) == 3:
            raise (interrupt or Terminated)()
        return labels_of(atoms)

    monkeypatch.setattr(generate_module, "labels_of", interrupted_on_the_third_frame)
    out = tmp_path / "d.npz"
    assert generate_module.main(["--molecule", "H2O", "--frames", "5", "--stride", "1", "--equilibration-steps",
                                 "0", "--no-progress", "--out", str(out)]) == code
    assert capsys.readouterr().err == (
        f"python -m physnetjax.data.generate: {said}; wrote the 2 of 5 frames labelled so far to {out}, a partial set "
        "(frames_requested 5): train on it as it is, continue it with the same command and --resume, or label more "
        "frames with another --seed into another file and train on both (--data A.npz B.npz)\n")
    dataset = load_npz(out)
    assert dataset.R.shape == (2, 3, 3) and np.all(np.isfinite(dataset.E))
    assert int(np.load(out)["frames_requested"]) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]


def test_an_interrupt_before_the_first_frame_writes_nothing(tmp_path, monkeypatch, capsys):
    pytest.importorskip("tblite")
    import physnetjax.data.generate as generate_module

    def interrupted(atoms):
        raise KeyboardInterrupt

    monkeypatch.setattr(generate_module, "labels_of", interrupted)
    out = tmp_path / "d.npz"
    assert generate_module.main(["--molecule", "H2O", "--frames", "5", "--no-progress", "--equilibration-steps", "0",
                                 "--out", str(out)]) == 130
    assert capsys.readouterr().err == ("python -m physnetjax.data.generate: interrupted; no frame was labelled yet, "
                                       f"nothing written to {out}\n")
    assert not out.exists()


def test_tblite_runs_one_openmp_thread_unless_the_environment_or_threads_says_otherwise(tmp_path, monkeypatch,
                                                                                         capsys):
    """main: tblite's default of a thread per core made a 4-atom call 20 times slower on a loaded 2-core machine."""
    import os

    import physnetjax.data.generate as generate_module

    seen = []
    monkeypatch.setattr(generate_module, "generate",
                        lambda *args, **kwargs: seen.append(os.environ.get("OMP_NUM_THREADS")) or {"E": np.zeros(1)})
    out = str(tmp_path / "d.npz")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert generate_module.main(["--out", out, "--overwrite"]) == 0
    assert generate_module.main(["--out", out, "--overwrite", "--threads", "2"]) == 0
    assert "OMP_NUM_THREADS" not in os.environ  # as it was after the call
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert generate_module.main(["--out", out, "--overwrite"]) == 0
    assert generate_module.main(["--out", out, "--overwrite", "--threads", "4"]) == 0
    assert os.environ["OMP_NUM_THREADS"] == "3"
    assert seen == ["1", "2", "3", "4"]
    capsys.readouterr()
    assert generate_module.main(["--out", out, "--threads", "0"]) == 2
    assert capsys.readouterr().err == ("python -m physnetjax.data.generate: error: --threads must be >= 1 (OpenMP "
                                       "threads of tblite), received 0\n")


def interrupted_run(monkeypatch, after: int, **settings):
    """generate(**settings) stopped by Ctrl-C while labelling frame ``after`` + 1: the partial set it hands on."""
    import physnetjax.data.generate as generate_module

    calls = []

    def interrupted(atoms):
        calls.append(1)
        if len(calls) == after + 1:
            raise KeyboardInterrupt
        return labels_of(atoms)

    with monkeypatch.context() as patch:
        patch.setattr(generate_module, "labels_of", interrupted)
        with pytest.raises(KeyboardInterrupt) as caught:
            generate(**settings)
    return caught.value.labelled


@pytest.mark.parametrize("sampling", ["md", "normal-modes"])
def test_a_resumed_set_continues_the_sampling_where_the_partial_set_ended(monkeypatch, sampling):
    """A partial set used to be all one got: another --seed was the only way on. It now holds the sampler's state, and
    the frames after the resume are those of the uninterrupted run: normal-mode samples to round-off (the same minimum
    and Hessian, the same draws), MD up to xTB's SCF, restarted from scratch at the resume (positions within 1e-5 Å; a
    random-number generator or momenta not restored moves the atoms by ~1e-3 Å per step of Langevin noise)."""
    pytest.importorskip("tblite")
    settings = dict(molecule="H2O", frames=6, seed=3, sampling=sampling,
                    **({"stride": 2, "equilibration_steps": 4} if sampling == "md" else {}))
    whole = generate(**settings)
    assert not any(key.startswith("resume_") for key in whole)  # a complete set holds no sampler state
    partial = interrupted_run(monkeypatch, 3, **settings)
    assert len(partial["E"]) == 3 and int(partial["frames_requested"]) == 6
    resumed = generate(**settings, resume=partial)
    assert sorted(resumed) == sorted(whole)
    kind = f"{sampling}_500K"  # generate's default temperature
    assert partial["config_type"].tolist() == [kind] * 3 and resumed["config_type"].tolist() == [kind] * 6
    np.testing.assert_array_equal(resumed["R"][:3], partial["R"])
    # two separate runs relax and take the Hessian to round-off alike (1e-14 Å apart in this file's process)
    np.testing.assert_allclose(resumed["R"], whole["R"], rtol=0, atol=1e-10 if sampling == "normal-modes" else 1e-5)
    np.testing.assert_allclose(resumed["E"], whole["E"], rtol=0, atol=1e-5)
    # the labels of the same positions: xTB's SCF, restarted from scratch at the resume, converges to ~1e-4 eV/Å in
    # the forces (measured 1.5e-4 on the first resumed water frame)
    np.testing.assert_allclose(resumed["F"], whole["F"], rtol=0, atol=5e-4)


def test_frames_carry_their_sampling_and_temperature_as_their_kind_and_older_partial_sets_resume(monkeypatch,
                                                                                                   tmp_path):
    """Sets of two temperatures trained on together were one kind ("Default") for eval and the trainer's report; each
    frame now carries ``<sampling>_<T>K``. A partial set written before kinds were (no ``config_type``) resumes into a
    set whose every frame has it."""
    pytest.importorskip("tblite")
    from physnetjax.data import concatenate, load_npz
    from physnetjax.npz_file import write_npz

    settings = dict(molecule="H2O", frames=3, seed=3, stride=1, equilibration_steps=0)
    partial = interrupted_run(monkeypatch, 1, **settings, temperature=300.0)
    older = {key: value for key, value in partial.items() if key != "config_type"}
    write_npz(tmp_path / "cool.npz", generate(**settings, temperature=300.0, resume=older))
    write_npz(tmp_path / "hot.npz", generate(**settings, temperature=812.5))
    write_npz(tmp_path / "modes.npz", generate(**settings, temperature=300.0, sampling="normal-modes"))
    data = concatenate([load_npz(tmp_path / name) for name in ("cool.npz", "hot.npz", "modes.npz")])
    assert data.config_type.tolist() == ["md_300K"] * 3 + ["md_812.5K"] * 3 + ["normal-modes_300K"] * 3


def test_resume_on_the_command_line_and_what_it_refuses(tmp_path, monkeypatch, capsys):
    pytest.importorskip("tblite")
    import physnetjax.data.generate as generate_module

    out = tmp_path / "d.npz"
    command = ["--molecule", "H2O", "--frames", "4", "--stride", "1", "--equilibration-steps", "0", "--no-progress",
               "--out", str(out)]
    assert generate_module.main([*command, "--resume"]) == 2
    assert capsys.readouterr().err == (f"python -m physnetjax.data.generate: error: --resume {out}: the file does not "
                                       "exist, nothing to resume (run without --resume to start a set)\n")
    out.write_text("not an archive")
    assert generate_module.main([*command, "--resume"]) == 2
    assert capsys.readouterr().err == (f"python -m physnetjax.data.generate: error: --resume {out}: not an .npz file "
                                       "(it is not a zip archive)\n")
    out.unlink()
    calls = []

    def interrupted_on_the_third_frame(atoms):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return labels_of(atoms)

    with monkeypatch.context() as patch:
        patch.setattr(generate_module, "labels_of", interrupted_on_the_third_frame)
        assert generate_module.main(command) == 130
    assert "continue it with the same command and --resume" in capsys.readouterr().err
    assert generate_module.main([*command[:-2], "--temperature", "300", "--out", str(out), "--resume"]) == 2
    assert capsys.readouterr().err == (
        f"python -m physnetjax.data.generate: error: --resume {out}: it was sampled with temperature_K 500.0, this "
        "command asks for 300.0: resume with its settings (--temperature), or write a new set elsewhere\n")
    assert generate_module.main([*command, "--resume"]) == 0
    assert capsys.readouterr().out == f"wrote {out}: 4 frames\n"
    data = dict(np.load(out))
    assert len(data["E"]) == 4 and np.all(np.isfinite(data["E"])) and not any(k.startswith("resume_") for k in data)
    assert generate_module.main([*command, "--resume"]) == 2
    assert capsys.readouterr().err.endswith(f"--resume {out}: nothing to resume: it holds all 4 frames it was "
                                            "asked for\n")
    stateless = {key: value[:2] if key in ("R", "F", "D", "Qa", "E", "Z", "N", "Q") else value
                 for key, value in data.items()}
    np.savez(out, **stateless)
    assert generate_module.main([*command, "--resume"]) == 2
    assert capsys.readouterr().err.endswith(
        f"--resume {out}: its 2 frames cannot be continued: it holds no sampler state (resume_positions; partial "
        "sets written before --resume existed do not); label more frames with another --seed into another file and "
        "train on both\n")


def test_an_scf_failure_after_labelled_frames_keeps_them_and_blames_the_geometry(tmp_path, monkeypatch, capsys):
    """main: H2O at 15000 K failed its SCF at frame 55 of 3000; the 54 labelled frames were lost (Ctrl-C would have
    written them) and the message asked for another uhf or charge, which had served the 54 frames before."""
    pytest.importorskip("tblite")
    from ase.calculators.calculator import CalculationFailed

    import physnetjax.data.generate as generate_module

    calls = []

    def unconverged_on_the_third_frame(atoms):
        calls.append(1)
        if len(calls) == 3:
            raise CalculationFailed("SCF not converged in 250 cycles")
        return labels_of(atoms)

    out = tmp_path / "hot.npz"
    command = ["--molecule", "H2O", "--frames", "4", "--stride", "1", "--equilibration-steps", "0", "--no-progress",
               "--out", str(out)]
    with monkeypatch.context() as patch:
        patch.setattr(generate_module, "labels_of", unconverged_on_the_third_frame)
        assert generate_module.main(command) == 2
    assert capsys.readouterr().err == (
        "python -m physnetjax.data.generate: error: H2O (Langevin MD, sampling frame 3 of 4): the GFN2-xTB SCF (xTB, "
        "tblite) failed at charge 0 e with 0 unpaired electrons (SCF not converged in 250 cycles): xTB cannot "
        "converge that charge and spin state at this geometry; frames 1-2 were labelled at this charge and spin "
        "state, so this frame's geometry is the likely cause (a hot or distorted one): lower --temperature (500 K), "
        f"or check the structure; wrote the 2 of 4 frames labelled so far to {out}, a partial set (frames_requested "
        "4): train on it as it is, continue it with the same command and --resume (from the state before the failed "
        "frame, which it samples again and may fail on again), or label more frames at a lower --temperature into "
        "another file and train on both (--data A.npz B.npz)\n")
    partial = dict(np.load(out))
    assert len(partial["E"]) == 2 and np.all(np.isfinite(partial["E"])) and "resume_momenta" in partial
    assert generate_module.main([*command, "--resume"]) == 0  # resumable, as after Ctrl-C
    assert len(np.load(out)["E"]) == 4
    capsys.readouterr()

    def unconverged(atoms):  # at the first frame: nothing labelled yet, the charge and spin state are suspect
        raise CalculationFailed("SCF not converged in 250 cycles")

    monkeypatch.setattr(generate_module, "labels_of", unconverged)
    with pytest.raises(PhysNetInputError, match=r"try another uhf \(--uhf\) or charge \(--charge\)$") as caught:
        generate("H2O", frames=2, stride=1, equilibration_steps=0, names=generate_module.OPTION_OF)
    assert caught.value.labelled is None
    from ase.calculators.calculator import InputError

    calls.clear()

    def collided_on_the_third_frame(atoms):  # tblite refusing a geometry keeps the frames before it too
        calls.append(1)
        if len(calls) == 3:
            raise InputError("Too close interatomic distances found")
        return labels_of(atoms)

    monkeypatch.setattr(generate_module, "labels_of", collided_on_the_third_frame)
    with pytest.raises(PhysNetInputError, match="the sampling drove atoms together") as caught:
        generate("H2O", frames=4, stride=1, equilibration_steps=0)
    assert len(caught.value.labelled["E"]) == 2 and int(caught.value.labelled["frames_requested"]) == 4


def test_the_temperature_is_bounded_as_md_and_the_learning_loop_bound_it(tmp_path, capsys):
    """main: --temperature had no upper bound (2e6 K ran into SCF failures blamed on the spin state)."""
    from physnetjax.data.generate import main

    assert main(["--molecule", "H2O", "--frames", "1", "--temperature", "2e6", "--out", str(tmp_path / "d.npz")]) == 2
    assert capsys.readouterr().err == ("python -m physnetjax.data.generate: error: --temperature must be at most "
                                       "1e+06 K (k_B T = 86 eV there, beyond any chemistry), received 2000000.0\n")
    assert list(tmp_path.iterdir()) == []


def test_a_structure_in_bohr_warns_as_the_spectra_commands_warn(tmp_path):
    """main: water with its positions in bohr (1.89× its bond lengths apart) was labelled without a word."""
    pytest.importorskip("tblite")
    from physnetjax.errors import LengthUnitWarning

    stretched = water()
    stretched.positions /= 0.529177
    ase.io.write(tmp_path / "h2o_bohr.xyz", stretched)
    with pytest.warns(LengthUnitWarning, match=r"h2o_bohr\.xyz: atoms sit 1\.89× the covalent bond length .* are they "
                                               r"in bohr \(multiply by 0\.529177\)\?"):
        generate(str(tmp_path / "h2o_bohr.xyz"), frames=1, stride=1, equilibration_steps=0)
    with warnings_as_errors():
        generate("H2O", frames=1, stride=1, equilibration_steps=0)


def _damaged(partial: dict, **changes) -> dict:
    """A copy of ``partial`` with ``changes``: a key set to an array, or to a function of the key's array."""
    damaged = {key: np.array(value, copy=True) for key, value in partial.items()}
    for key, change in changes.items():
        damaged[key] = change(damaged[key]) if callable(change) else change
    return damaged


def _set(index, value):
    """A change for :func:`_damaged` that sets ``array[index] = value``."""
    def change(array):
        array[index] = value
        return array
    return change


def test_resume_refuses_a_damaged_partial_set_naming_key_and_frame(tmp_path, monkeypatch, capsys):
    """A genuine partial set, damaged: main resumed E[10] = NaN and a frame of atoms on one spot into a complete set
    (exit 0), and said the rest in NumPy's or JSON's words ("could not broadcast input array", "Expecting value"),
    or blamed NaN momenta on the spin state ("try another uhf")."""
    pytest.importorskip("tblite")
    import json

    import physnetjax.data.generate as generate_module

    settings = dict(molecule="H2O", frames=6, stride=1, equilibration_steps=0, seed=3)
    partial = interrupted_run(monkeypatch, 3, **settings)
    other_generator = np.random.Generator(np.random.SFC64(1)).bit_generator.state
    damaged_sets = {
        "fewer energies": (_damaged(partial, E=partial["E"][:2]),
                           "its per-frame arrays hold different numbers of frames (E 2, R 3, F 3, D 3, Qa 3, Z 3), "
                           "where each has a row per frame"),
        "positions of other atoms": (_damaged(partial, resume_positions=np.zeros((4, 3))),
                                     "key 'resume_positions' has shape (4, 3), expected (3, 3): the sampler's state "
                                     "after its 3 frames, for the 3 atoms of this command's molecule"),
        "forces of other atoms": (_damaged(partial, F=np.zeros((3, 2, 3))),
                                  "key 'F' has shape (3, 2, 3), expected (3, 3, 3): 3 frames, as key 'E' holds, of "
                                  "the 3 atoms of this command's molecule"),
        "energy NaN": (_damaged(partial, E=_set(1, np.nan)), "key 'E' has NaN or Inf in frame(s) 1, which this command "
                                                             "never writes"),
        "forces Inf": (_damaged(partial, F=_set((2, 0, 1), np.inf)), "key 'F' has NaN or Inf in frame(s) 2"),
        "momenta NaN": (_damaged(partial, resume_momenta=_set((0, 0), np.nan)),
                        "key 'resume_momenta' has NaN or Inf (the sampler's state after its 3 frames)"),
        "atoms on one spot": (_damaged(partial, R=_set(1, 0.0)),
                              "key 'R': frame 1 has overlapping atoms (atoms 0-1 at 0 Å, closer than 0.1 Å), a "
                              "geometry this command never samples"),
        "positions far out": (_damaged(partial, resume_positions=_set((2, 0), 1e30)),
                              "key 'resume_positions' has coordinates beyond ±10000 Å, a geometry this command never "
                              "samples"),
        "truncated generator state": (_damaged(partial, resume_rng_state=lambda state: np.array(str(state)[:36])),
                                      "key 'resume_rng_state' is not the state of NumPy's PCG64 generator this "
                                      "command samples with (JSONDecodeError: Expecting value"),
        "another generator": (_damaged(partial, resume_rng_state=np.array(json.dumps(other_generator,
                                                                                     default=np.ndarray.tolist))),
                              "(ValueError: state must be for a PCG64 RNG)"),
        "energies as text": (_damaged(partial, E=partial["E"].astype(str)), "key 'E' holds <U32 values, not real "
                                                                            "numbers"),
        "another atom in a frame": (_damaged(partial, Z=_set((2, 1), 6)),
                                    "key 'Z' of frame 2 ([8, 6, 1]) is not that of its frame 0 and this command's "
                                    "molecule ([8, 1, 1])"),
    }
    damage = "; the set was damaged or edited after this command wrote it: label a new set into another file"
    for name, (damaged, message) in damaged_sets.items():
        with pytest.raises(PhysNetInputError) as caught:
            generate(**settings, resume=damaged)
        assert message in str(caught.value) and str(caught.value).startswith("resume: "), (name, str(caught.value))
        assert str(caught.value).endswith(damage), name
    out = tmp_path / "d.npz"
    np.savez(out, **damaged_sets["energy NaN"][0])
    assert generate_module.main(["--molecule", "H2O", "--frames", "6", "--stride", "1", "--equilibration-steps", "0",
                                 "--seed", "3", "--no-progress", "--out", str(out), "--resume"]) == 2
    assert capsys.readouterr().err == (f"python -m physnetjax.data.generate: error: --resume {out}: key 'E' has NaN or "
                                       f"Inf in frame(s) 1, which this command never writes{damage}\n")


def test_resume_refuses_a_normal_mode_state_of_another_shape(monkeypatch):
    pytest.importorskip("tblite")
    settings = dict(molecule="H2O", frames=4, seed=3, sampling="normal-modes")
    partial = interrupted_run(monkeypatch, 2, **settings)
    with pytest.raises(PhysNetInputError, match=r"^resume: key 'resume_hessian' has shape \(6, 6\), expected \(9, 9\)"):
        generate(**settings, resume=_damaged(partial, resume_hessian=np.eye(6)))
    with pytest.raises(PhysNetInputError, match=r"^resume: key 'resume_minimum' has NaN or Inf"):
        generate(**settings, resume=_damaged(partial, resume_minimum=_set((1, 2), np.nan)))


def test_a_frame_count_beyond_the_memory_is_refused_before_allocating(tmp_path, capsys, monkeypatch):
    """main: --frames 100000000000 ended in an internal error (exit 5: MemoryError, "Unable to allocate 3.27 TiB"); a
    size the kernel over-commits is allocated and then filled until the kernel ends the process, so the free memory
    is checked first (here 1 GB free against 1.13 GB of labels, which NumPy would allocate)."""
    pytest.importorskip("tblite")
    import physnetjax.device_memory as device_memory
    from physnetjax.data.generate import main
    from physnetjax.errors import OutOfMemoryError

    assert main(["--molecule", "H2O", "--frames", "100000000000", "--out", str(tmp_path / "d.npz")]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"python -m physnetjax.data.generate: error: out of memory on the host to hold the labels of "
                        r"100000000000 frames \(--frames\): (it needs 11300\.0 GB, [\d.]+ GB are free|they need "
                        r"11300\.0 GB): lower --frames \(113 bytes a frame of 3 atoms\), or label several smaller sets "
                        r"with different --seed into separate files and train on them together \(--data A\.npz "
                        r"B\.npz\)\n", err), err
    with pytest.raises(OutOfMemoryError, match=r"labels of 100000000000 frames \(frames\): .*lower frames \(329 bytes "
                                               r"a frame of 3 atoms\)"):
        generate("H2O", frames=10**11, sampling="normal-modes")
    from ase.calculators.calculator import Calculator
    import physnetjax.data.generate as generate_module

    class Unreached(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, *args, **kwargs):
            raise AssertionError("the sampling started: the labels' memory was not checked")

    monkeypatch.setattr(device_memory, "host_available_bytes", lambda: 10**9)
    monkeypatch.setattr(generate_module, "tblite_calculator", lambda *args: Unreached())
    with pytest.raises(OutOfMemoryError, match=r"^out of memory on the host to hold the labels of 10000000 frames "
                                               r"\(frames\): it needs 1\.1 GB, 1\.0 GB are free: lower frames"):
        generate("H2O", frames=10**7)


def test_an_existing_out_is_replaced_only_with_overwrite_and_a_partial_one_points_at_resume(tmp_path, monkeypatch,
                                                                                              capsys):
    """main: a rerun, or a name typed twice, replaced a labelled set (hours of xTB) with a new one without a word,
    and a partial set that --resume would have continued started over."""
    import physnetjax.data.generate as generate_module

    made = []
    monkeypatch.setattr(generate_module, "generate", lambda *args, **kwargs: made.append(1) or {"E": np.ones(3)})
    out = tmp_path / "d.npz"
    error = "python -m physnetjax.data.generate: error: --out {} already exists{}; pass --overwrite to replace it, " \
            "or choose another path\n"
    for saved, note in [({"E": np.zeros(5), "frames_requested": np.array(5)}, " (5 labelled frames)"),
                        ({"E": np.zeros(2), "frames_requested": np.array(4), "resume_positions": np.zeros((3, 3))},
                         " (a partial set of 2 of 4 frames: continue it with the same command and --resume)"),
                        (None, "")]:
        if saved is None:
            out.write_text("my notes")
        else:
            np.savez(out, **saved)
        before = out.read_bytes()
        assert generate_module.main(["--frames", "3", "--out", str(out)]) == 3
        assert capsys.readouterr().err == error.format(out, note)
        assert out.read_bytes() == before and made == []
    assert generate_module.main(["--frames", "3", "--out", str(out), "--resume", "--overwrite"]) == 2
    assert capsys.readouterr().err == ("python -m physnetjax.data.generate: error: --resume continues the set at "
                                       "--out, --overwrite replaces it: give one of them\n")
    assert generate_module.main(["--frames", "3", "--out", str(out), "--overwrite"]) == 0
    assert made == [1] and np.load(out)["E"].tolist() == [1.0, 1.0, 1.0]


def test_an_unknown_method_names_the_option_and_its_choices_in_any_case(tmp_path, monkeypatch, capsys):
    """main: 'Method 'GFN3-xTB' is not available for this calculator' (tblite's words, no option, no choices), and
    gfn2-xtb in lower case was refused the same way."""
    import physnetjax.data.generate as generate_module

    out = str(tmp_path / "d.npz")
    with pytest.raises(SystemExit) as usage_error:
        generate_module.main(["--method", "GFN3-xTB", "--out", out])
    assert usage_error.value.code == 2 and capsys.readouterr().err == (
        "python -m physnetjax.data.generate: error: argument --method: invalid choice: 'GFN3-xTB' (choose from "
        "'GFN2-xTB', 'GFN1-xTB', 'IPEA1-xTB') (python -m physnetjax.data.generate --help lists the options)\n")
    with pytest.raises(PhysNetInputError, match=r"^method 'GFN3-xTB' is not a method tblite has: choose one of "
                                                r"GFN2-xTB, GFN1-xTB, IPEA1-xTB$"):
        generate("H2O", frames=1, method="GFN3-xTB")
    seen = []
    monkeypatch.setattr(generate_module, "generate", lambda *args, **kwargs: seen.append(args[7]) or {"E": np.zeros(1)})
    assert generate_module.main(["--method", "gfn1-xtb", "--out", out]) == 0
    assert seen == ["GFN1-xTB"]


def test_an_element_beyond_xtb_names_the_method_not_a_model(tmp_path, capsys):
    """main: 'outside this model's range Z = 1..86 (Rn (Z=86)); use a model trained with these elements', where
    there is no model, only GFN2-xTB."""
    from physnetjax.data.generate import main

    ase.io.write(tmp_path / "og.xyz", Atoms("Og"))
    assert main(["--molecule", str(tmp_path / "og.xyz"), "--frames", "1", "--out", str(tmp_path / "d.npz")]) == 2
    assert capsys.readouterr().err == (
        f"python -m physnetjax.data.generate: error: {tmp_path / 'og.xyz'}: element(s) Og (Z=118) at atom(s) 0 are "
        "beyond GFN2-xTB, which covers Z = 1..86, H to Rn: label molecules of these elements with another method "
        "(e.g. DFT) and train on that set\n")


def test_a_saddle_point_in_normal_mode_sampling_names_the_molecule(monkeypatch):
    """main: 'the Hessian has a vibrational eigenvalue ... <= 0: the geometry is not a minimum but a saddle point',
    without the molecule."""
    pytest.importorskip("tblite")
    import physnetjax.data.generate as generate_module

    monkeypatch.setattr(generate_module, "_relaxed_hessian", lambda atoms, progress=None: (atoms.get_positions(),
                                                                                           -np.eye(9)))
    with pytest.raises(PhysNetInputError, match=r"^H2O: the Hessian has a vibrational eigenvalue .* the geometry is "
                                                r"not a minimum but a saddle point"):
        generate("H2O", frames=1, sampling="normal-modes")
