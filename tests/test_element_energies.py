"""Element reference energies: degenerate compositions fall back to the scaled free-atom prior; check flags E0."""

import logging
import re
import warnings

import numpy as np
import pytest

from physnetjax.check.references import element_energy_findings, thomas_fermi_energy
from physnetjax.data import fit_reference_energies, shifted_energies
from physnetjax.data.atom_energies import GFN2_XTB_ATOM_ENERGIES
from physnetjax.data.reference import parse_element_energy_prior
from physnetjax.errors import PhysNetInputWarning
from physnetjax.training_record import TrainingRecord

ETHANOL = [6, 6, 8, 1, 1, 1, 1, 1, 1]
METHANOL = [6, 8, 1, 1, 1, 1, 0, 0, 0]


def noisy_energies(rows, totals, seed=0):
    rng = np.random.default_rng(seed)
    return np.array([totals[tuple(r)] for r in rows]) + rng.normal(scale=0.05, size=len(rows))


def test_single_composition_splits_in_proportion_to_free_atom_energies(caplog):
    """One molecule: E0[Z] = λ p_Z with λ = mean(E) / Σ_Z c_Z p_Z (p = GFN2-xTB free atoms)."""
    rows = [ETHANOL] * 12
    E = noisy_energies(rows, {tuple(ETHANOL): -309.6})
    with caplog.at_level(logging.WARNING, logger="physnetjax.data.reference"):
        fit = fit_reference_energies(np.array(rows), E, 9)
    assert fit.degenerate and fit.rank == 1 and fit.elements == (1, 6, 8) and fit.method == "prior-scaled"
    assert "determine only 1 combination(s) of the 3 element energies of Z = [1, 6, 8]" in caplog.text
    p = {z: GFN2_XTB_ATOM_ENERGIES[z] for z in (1, 6, 8)}
    scale = E.mean() / (6 * p[1] + 2 * p[6] + p[8])
    assert fit.scale == pytest.approx(scale, rel=1e-12)
    for z in (1, 6, 8):
        assert fit.energies[z] == pytest.approx(scale * p[z], rel=1e-12)
    assert abs(shifted_energies(np.array(rows), E, fit.energies).mean()) < 1e-10
    assert fit.energies[8] < fit.energies[6] < fit.energies[1] < 0
    assert element_energy_findings(fit.energies, ETHANOL) == []
    assert fit.to_dict()["degenerate"] is True


def test_two_compositions_of_three_elements_fix_only_the_row_space():
    """Ethanol + methanol (rank 2 of 3): both mean energies reproduced; the null direction follows the prior."""
    rows = [ETHANOL] * 6 + [METHANOL] * 5
    E = noisy_energies(rows, {tuple(ETHANOL): -309.6, tuple(METHANOL): -218.4}, seed=1)
    fit = fit_reference_energies(np.array(rows), E, 9)
    assert fit.rank == 2 and fit.method == "prior-scaled"
    e0 = fit.energies
    for composition, count in ((ETHANOL, 6), (METHANOL, 5)):
        rows_mean = E[[k for k, r in enumerate(rows) if r == composition]].mean()
        assert sum(e0[z] for z in composition if z) == pytest.approx(rows_mean, abs=1e-9)
    # (h, c, o) = (1, −2, −2) solves 6h + 2c + o = 0 and 4h + c + o = 0 (by hand): the undetermined direction.
    null = np.array([1.0, -2.0, -2.0])
    free = np.array([GFN2_XTB_ATOM_ENERGIES[z] for z in (1, 6, 8)])
    correction = np.array([e0[1], e0[6], e0[8]]) - fit.scale * free
    assert abs(correction @ null) < 1e-9  # the fit adds nothing along it to the scaled prior


def test_the_recorded_compositions_are_independent_and_the_table_covers_every_atomic_number():
    """Counts (H, C) of three compositions in the order the fit meets them: (1, 2), its multiple (2, 4), then
    (3, 1). The basis recorded for the span check keeps (1, 2) and (3, 1), rank 2 (taking any row that does not lower
    the rank would keep the dependent (2, 4) and lose (3, 1), calling compositions the data fix undetermined);
    the energy table has max_atomic_number + 1 entries."""
    rows = [[1, 6, 6, 0, 0, 0], [1, 1, 6, 6, 6, 6], [1, 1, 1, 6, 0, 0]]  # C2H, C4H2 (twice C2H's counts), CH3
    E = np.array([-80.0, -160.0, -50.0])
    fit = fit_reference_energies(np.array(rows), E, 9)
    assert fit.rank == 2 and not fit.degenerate and fit.elements == (1, 6)
    assert fit.basis == ((1, 2), (3, 1))
    assert np.linalg.matrix_rank(np.array(fit.basis)) == fit.rank
    assert fit.energies.shape == (10,)


def test_determined_compositions_use_plain_least_squares(caplog):
    e0 = {1: -13.6, 6: -1029.7, 8: -2041.3}
    rows = [[6, 1, 1, 1, 1], [8, 1, 1, 0, 0], [6, 8, 8, 0, 0]]
    E = np.array([sum(e0[z] for z in r if z) for r in rows])
    with caplog.at_level(logging.WARNING):
        fit = fit_reference_energies(np.array(rows), E, 8)
    assert fit.method == "least-squares" and not fit.degenerate and fit.message == "" and caplog.text == ""
    for z, value in e0.items():
        assert fit.energies[z] == pytest.approx(value, abs=1e-9)


def test_user_prior_without_an_element_falls_back_to_minimum_norm_and_says_so():
    rows = [ETHANOL] * 3
    fit = fit_reference_energies(np.array(rows), np.full(3, -309.6), 9, prior={1: -13.6, 6: -1029.7})
    assert fit.method == "minimum-norm" and "no user prior for Z = [8]" in fit.message
    counts = {1: 6, 6: 2, 8: 1}
    for z, c in counts.items():  # minimum norm: E0 = c E / (c · c)
        assert fit.energies[z] == pytest.approx(c * -309.6 / 41.0, rel=1e-12)
    assert any(f.startswith("counts:") for f in element_energy_findings(fit.energies, ETHANOL))


def test_findings_on_the_shipped_style_minimum_norm_split():
    """E0 of the shipped ethanol model (−45.3, −15.1, −7.55 eV) trips counts, hydrogen and magnitude."""
    e0 = np.zeros(10)
    e0[1], e0[6], e0[8] = -309.6 * 6 / 41, -309.6 * 2 / 41, -309.6 / 41
    findings = element_energy_findings(e0, ETHANOL)
    assert [f.split(":")[0] for f in findings] == ["counts", "hydrogen", "magnitude"]
    assert thomas_fermi_energy(1) == pytest.approx(0.7687 * 27.211386245988, rel=1e-12)
    e0[7] = 0.0
    assert element_energy_findings(e0, [7, 1])[0].startswith("absent: E0 = 0 for Z = [7]")


def test_check_warns_on_the_shipped_model_and_its_numbers_are_unchanged(molecules):
    """The shipped ethanol model keeps its stored E0 (the old minimum-norm split) and ``check`` says so."""
    from physnetjax import load_checkpoint
    from physnetjax.check import check_model
    from physnetjax.pretrained import example_model_path

    model, params = load_checkpoint(example_model_path("ethanol"))
    assert (model.element_energies[1], model.element_energies[6], model.element_energies[8]) == (
        -45.30546189023508, -15.101820630078034, -7.550910315039018)
    report = check_model(model, params, [molecules["ethanol"]], groups=("references",))
    (result,) = report.checks
    assert result.status == "warn" and result.value == 3.0
    assert [f.split(":")[0] for f in result.details["findings"]] == ["counts", "hydrogen", "magnitude"]


def test_compositions_outside_the_span_of_the_training_compositions_are_named():
    """Ethanol + methanol fix E0 along their span only: ethylene glycol C2H6O2 is outside it, C3H10O2 (ethanol +
    methanol) inside; a masked frame and one with an unseen element are not judged."""
    from physnetjax.validation import check_reference_compositions, formula, undetermined_compositions

    rows = [ETHANOL] * 3 + [METHANOL] * 2
    fit = fit_reference_energies(np.array(rows), np.array([-309.6] * 3 + [-218.4] * 2), 9).to_dict()
    assert fit["basis"] == [[4, 1, 1], [6, 2, 1]]  # counts of H, C, O of methanol and ethanol
    glycol = [6, 6, 8, 8, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    both = [6, 6, 6, 8, 8] + [1] * 10
    pad = [z for z in ETHANOL] + [0] * 6
    z = np.array([pad, glycol, both, glycol, [7, 1, 1, 1] + [0] * 11])
    n = np.array([9, 10, 15, 10, 4])
    assert formula(glycol) == "C2H6O2" and formula(both) == "C3H10O2" and formula([8, 1, 1]) == "H2O"
    assert undetermined_compositions(z, n, fit) == {"C2H6O2": [1, 3]}  # NH3 (unseen N) is left to the element check
    assert undetermined_compositions(z, n, fit, mask=[True, False, True, True, True]) == {"C2H6O2": [3]}
    with pytest.warns(PhysNetInputWarning, match=r"^x: composition\(s\) C2H6O2 \(2 frames, first 1\) in 2 of 5 frames "
                                                 r"are not combinations of the training compositions \(CH4O, C2H6O\), "
                                                 r"which fixed only 2 combination\(s\) of the element reference "
                                                 r"energies E0 of H, C, O; .*\(prior-scaled, gfn2-xtb-atoms prior\)"):
        assert check_reference_compositions(z, n, fit, where="x") == ["C2H6O2"]
    determined = fit_reference_energies(np.array(rows + [[6, 8, 8] + [0] * 6]), np.full(6, -300.0), 9).to_dict()
    assert undetermined_compositions(z, n, determined) == {}
    assert undetermined_compositions(z, n, {k: v for k, v in fit.items() if k != "basis"}) == {}  # old record
    assert undetermined_compositions(z, n, None) == {}
    assert undetermined_compositions(z, n, {**fit, "degenerate": False}) == {}  # E0 fixed for every composition
    assert undetermined_compositions(z, n, {k: v for k, v in fit.items() if k != "degenerate"}) == {"C2H6O2": [1, 3]}
    z[2, 3], n[2] = 6, 3  # frame 2 is now C3 (its atoms after the third are padding, whatever they hold)
    assert undetermined_compositions(z, n, fit) == {"C2H6O2": [1, 3], "C3": [2]}
    with pytest.warns(PhysNetInputWarning, match=r"^composition\(s\) C2H6O2 \(frame 1\) in 1 of 2 frames are not"):
        assert check_reference_compositions(z[:2], n[:2], fit) == ["C2H6O2"]


def test_calculator_and_predict_warn_once_per_undetermined_composition(molecules):
    """On main a model trained on ethanol alone gave methanol an absolute energy with an undetermined offset,
    silently; now predict and the calculator say so (the calculator once per composition)."""
    import ase

    from physnetjax import PhysNet, init_params, predict
    from physnetjax.calculator import PhysNetCalculator

    fit = fit_reference_energies(np.array([ETHANOL]), np.array([-309.6]), 9).to_dict()
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=4, cutoff=4.0, charges=False,
                    zbl=False, max_atomic_number=9)
    params = init_params(model, 0)
    z, r = molecules["methanol"]
    match = r"composition\(s\) CH4O are not combinations of the training compositions \(C2H6O\).*the energy returned"
    with pytest.warns(PhysNetInputWarning, match=match):
        predict(model, params, z, r, training_record=TrainingRecord(element_energies_fit=fit))
    calc = PhysNetCalculator(model, params, training_record=TrainingRecord(element_energies_fit=fit))
    atoms = ase.Atoms(numbers=z, positions=r)
    atoms.calc = calc
    with pytest.warns(PhysNetInputWarning, match=match) as record:
        atoms.get_potential_energy()
        atoms.positions += 0.01
        atoms.get_potential_energy()
    assert len([w for w in record if "not combinations" in str(w.message)]) == 1
    ethanol = ase.Atoms(numbers=molecules["ethanol"][0], positions=molecules["ethanol"][1])
    ethanol.calc = calc
    with warnings.catch_warnings():
        warnings.simplefilter("error", PhysNetInputWarning)
        ethanol.get_potential_energy()
        predict(model, params, *molecules["ethanol"], training_record=TrainingRecord(element_energies_fit=fit))


@pytest.mark.parametrize("name", ["ethanol_ir", "ethanol"])
def test_the_shipped_ethanol_models_say_methanol_energies_carry_an_offset(molecules, name):
    """Both shipped ethanol models were trained on ethanol frames only: their record of the E0 fit names that one
    composition, so their calculator (loaded from the checkpoint) warns for methanol and not for ethanol. The
    default model (`ethanol`) predates the record, which was added to its metadata afterwards: it was silent."""
    import ase

    from physnetjax.calculator import PhysNetCalculator
    from physnetjax.pretrained import example_model_path

    calc = PhysNetCalculator(checkpoint=str(example_model_path(name)))
    methanol = ase.Atoms(numbers=molecules["methanol"][0], positions=molecules["methanol"][1], calculator=calc)
    with pytest.warns(PhysNetInputWarning, match=r"composition\(s\) CH4O are not combinations of the training "
                                                 r"compositions \(C2H6O\)"):
        methanol.get_potential_energy()
    ethanol = ase.Atoms(numbers=molecules["ethanol"][0], positions=molecules["ethanol"][1], calculator=calc)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PhysNetInputWarning)
        ethanol.get_potential_energy()


def test_the_trainers_prior_option_splits_e0_and_warns_where_the_data_fix_it(tmp_path):
    """``element_energy_prior`` (``--element-energy-prior``) reached only the library function before: one molecule's
    E0 followed the GFN2-xTB atoms whatever the data's method. For one composition E0 = λ p (module docstring of
    physnetjax.data.reference); where the compositions fix E0 the prior is unused, which warns."""
    from pathlib import Path

    from physnetjax.train import TrainConfig, Trainer

    tiny = dict(features=8, max_degree=0, num_iterations=1, n_res=1, num_basis_functions=4, cutoff=4.0,
                valid=2, test=0, progress=False, plots=False)
    ethanol = str(Path(__file__).parent / "data" / "train_ethanol64.npz")
    (tmp_path / "a").mkdir()
    trainer = Trainer(TrainConfig(data=[ethanol], element_energy_prior=["H=-10", "6=-40", "O=-100"],
                                  out=str(tmp_path / "a"), **tiny), tmp_path / "a", resuming=False)
    ratios = trainer.element_energies[[1, 6, 8]] / np.array([-10.0, -40.0, -100.0])
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-12)
    assert trainer.element_energies_fit["prior"] == "user"

    depth, width, r0 = 4.7, 1.9, 0.74  # H2 on a Morse curve: one element, so E0[H] is fixed by the data
    r = np.linspace(0.6, 1.0, 12)
    energy = depth * (1 - np.exp(-width * (r - r0))) ** 2 - 31.5
    slope = 2 * depth * width * np.exp(-width * (r - r0)) * (1 - np.exp(-width * (r - r0)))  # dE/dr
    positions = np.zeros((12, 2, 3))
    positions[:, 1, 0] = r
    forces = np.zeros((12, 2, 3))
    forces[:, 0, 0], forces[:, 1, 0] = slope, -slope
    np.savez(tmp_path / "h2.npz", R=positions, Z=np.ones((12, 2), int), E=energy, F=forces)
    (tmp_path / "b").mkdir()
    with pytest.warns(PhysNetInputWarning, match=r"^element_energy_prior is not used: the training compositions "
                                                 r"determine every element energy E0 \(a least-squares fit\)$"):
        Trainer(TrainConfig(data=[str(tmp_path / "h2.npz")], element_energy_prior=["H=-13.6"],
                            out=str(tmp_path / "b"), **tiny), tmp_path / "b", resuming=False)
    with pytest.raises(ValueError, match=r"--element-energy-prior: element energy 'Xx=1': 'Xx' is no element"):
        TrainConfig(element_energy_prior=["Xx=1"], names={"element_energy_prior": "--element-energy-prior"})


@pytest.mark.parametrize("entries, message", [
    (["=5"], "element energy '=5': give ELEMENT=ENERGY, e.g. H=-13.6 (in the energy unit)"),
    (["H"], "element energy 'H': give ELEMENT=ENERGY"),
    (["H="], "element energy 'H=': give ELEMENT=ENERGY"),
    (["0=1"], "element energy '0=1': '0' is no element (a symbol such as H or Cl, or an atomic number)"),
    (["119=1"], "element energy '119=1': '119' is no element"),
    (["H=abc"], "element energy 'H=abc': 'abc' is no finite number"),
    (["H=inf"], "element energy 'H=inf': 'inf' is no finite number"),
    (["H=1", "1=2"], "element energy '1=2': H is given twice"),
])
def test_element_energy_prior_entries_are_parsed_or_named(entries, message):
    """ELEMENT=ENERGY by symbol or atomic number (1 to 118), in the energy unit, each element once; a malformed
    entry is named with what is wrong (an entry without an element was read as an unknown element '')."""
    kcal_per_mol = 4184.0 / 6.02214076e23 / 1.602176634e-19  # eV, CODATA 2018
    prior = parse_element_energy_prior(["H=-13.6", " 118 = 2.5 "], energy_unit="kcal/mol")
    assert prior.keys() == {1, 118}
    np.testing.assert_allclose([prior[1], prior[118]], [-13.6 * kcal_per_mol, 2.5 * kcal_per_mol], rtol=1e-12)
    assert parse_element_energy_prior(None) is None and parse_element_energy_prior([]) is None
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        parse_element_energy_prior(entries)
