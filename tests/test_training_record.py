"""TrainingRecord: one object read from a checkpoint's metadata, one call that checks an input against it."""

import dataclasses
import importlib
import re
import warnings

import ase
import ase.io
import numpy as np
import pytest

from conftest import warnings_as_errors

from physnetjax import PhysNet, TrainingRecord, init_params
from physnetjax.data import fit_reference_energies
from physnetjax.distance_domain import DistanceDomain
from physnetjax.errors import PhysNetInputWarning
from physnetjax.md.driver import simulate

ETHANOL = [6, 6, 8, 1, 1, 1, 1, 1, 1]
METHANOL = np.array([6, 8, 1, 1, 1, 1])
METHANOL_R = np.array([[0.0, 0.0, 0.0], [1.43, 0.0, 0.0], [-0.36, 1.03, 0.0], [-0.36, -0.51, 0.89],
                       [-0.36, -0.51, -0.89], [1.75, 0.0, 0.9]])
DOMAIN = {"trained_distances": DistanceDomain(5.0, {(1, 6): 1.0}, {1: 1.2}).to_metadata()}
"""C-H pairs down to 1.0 Å, every H within 1.2 Å of its nearest neighbour (0.9 and 1.32 Å with the margin)."""
STRETCHED_H = (r"atom 2 \(H\) has its nearest neighbour 2.18 Å away; the training data's longest nearest-neighbour "
               r"distance of H was 1.2 Å: the model extrapolates here")


def moved_h(factor):
    """Methanol with H 2 moved along its C-H bond (1.09 Å) to ``factor`` times its length."""
    r = METHANOL_R.copy()
    r[2] *= factor
    return r


@pytest.fixture(scope="module")
def ethanol_record():
    """What a model trained on ethanol alone records: H, C, O; neutral; E0 fixed only for C2H6O."""
    fit = fit_reference_energies(np.array([ETHANOL]), np.array([-309.6]), 9).to_dict()
    return TrainingRecord(elements=(1, 6, 8), charges=(0.0,), element_energies_fit=fit)


@pytest.fixture(scope="module")
def tiny():
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=4, cutoff=4.0, charges=True,
                    zbl=False, max_atomic_number=9)
    return model, init_params(model, 0)


def messages(caught):
    return [str(w.message) for w in caught if issubclass(w.category, PhysNetInputWarning)]


def test_each_part_of_the_record_judges_its_own_input(ethanol_record, tiny):
    model, _ = tiny
    record = TrainingRecord(elements=(1, 6), charges=ethanol_record.charges,
                            element_energies_fit=ethanol_record.element_energies_fit)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record.check_structure(model, METHANOL, total_charge=1.0, where="frame 3")
    said = messages(caught)
    assert len(said) == 3 and all(text.startswith("frame 3: ") for text in said)
    assert "O (Z=8) (atom(s) 1) never occurred in this model's training data (trained on H, C)" in said[0]
    assert "total charge +1 e never occurred" in said[1]
    assert "composition(s) CH4O are not combinations of the training compositions (C2H6O)" in said[2]
    assert said[2].endswith("the energy returned includes it; forces, and energy differences between structures "
                            "of one composition, are unaffected")


def test_an_input_inside_the_record_or_an_empty_record_says_nothing(ethanol_record, tiny):
    model, _ = tiny
    with warnings_as_errors():
        ethanol_record.check_structure(model, np.array(ETHANOL), total_charge=0.0)
        TrainingRecord().check_structure(model, METHANOL, total_charge=1.0)  # a charge model may be asked anything
        ethanol_record.check_structure(model, METHANOL, consequence=None)  # results free of absolute energies


def test_a_charge_free_model_is_told_of_its_total_charge_without_a_record():
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=4, cutoff=4.0, charges=False,
                    zbl=False, max_atomic_number=9)
    with pytest.warns(PhysNetInputWarning, match=r"total charge 1 e given to a model without charges"):
        TrainingRecord().check_structure(model, METHANOL, total_charge=1.0)


def test_frames_are_counted_and_compositions_judged_only_where_asked(ethanol_record):
    z = np.array([ETHANOL, list(METHANOL) + [0, 0, 0], list(METHANOL) + [0, 0, 0]])
    n, q = np.array([9, 6, 6]), np.array([0.0, 0.0, -1.0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ethanol_record.check_dataset(z, n, q, where="--data") == []
    assert messages(caught) == [
        "--data: total charge(s) -1 e (in 1 of 3 frames, first frame 2) never occurred in this model's training data "
        "(trained on total charge 0 e); its energies and forces there are an extrapolation"]
    with pytest.warns(PhysNetInputWarning, match=r"CH4O \(frame 1\) in 1 of 3 frames .*; their errors include it"):
        formulas = ethanol_record.check_dataset(z, n, np.zeros(3), consequence="their errors include it",
                                                mask=np.array([True, True, False]))
    assert formulas == ["CH4O"]


def test_md_names_an_undetermined_composition_and_the_distances_of_its_start_geometry(ethanol_record, tiny):
    """MD logs absolute potential energies; the md CLI used to pass no E0 record, so methanol run with a model
    trained on ethanol alone said nothing of the offset in them. A start geometry with a C-H bond stretched to 2.2 Å
    is named as well."""
    model, params = tiny
    record = dataclasses.replace(ethanol_record, distances=TrainingRecord.from_metadata(DOMAIN).distances)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        simulate(model, params, ase.Atoms(numbers=METHANOL, positions=moved_h(2.0)), steps=2, save_every=1,
                 chunk_frames=2, temperature_K=10.0, training_record=record)
    said = [text for text in messages(caught) if text.startswith("MD start geometry: ")]
    assert len(said) == 2
    assert re.search(r"composition\(s\) CH4O .*the logged potential energies include it", said[0])
    assert re.search(STRETCHED_H, said[1])


def test_a_re_saved_checkpoints_record_is_read_one_level_down(ethanol_record):
    """Checkpoints re-saved with ``metadata={"source_metadata": run_metadata}`` (the shipped models) keep the
    training run's record one level down; it is read there, and a record at the top level comes first."""
    record = {"trained_elements": [8, 1, 6], "trained_charges": [0.0],
              "element_energies_fit": ethanol_record.element_energies_fit}
    assert TrainingRecord.from_metadata(record) == ethanol_record
    assert TrainingRecord.from_metadata({"source_metadata": record, "note": "re-saved"}) == ethanol_record
    both = TrainingRecord.from_metadata({"trained_elements": [1, 6], "source_metadata": record})
    assert both.elements == (1, 6) and both.charges == (0.0,)
    assert TrainingRecord.from_metadata({"source_metadata": "not a record"}) == TrainingRecord()
    assert TrainingRecord.from_metadata(None) == TrainingRecord()


def test_entry_points_take_a_metadata_dict_or_none_as_the_record(tiny):
    """predict(..., training_record=metadata) (the dict load_checkpoint returns) and training_record=None ended in
    "AttributeError: 'dict' object has no attribute 'check_structure'"."""
    from physnetjax import PhysNetCalculator, predict
    from physnetjax.training_record import NO_TRAINING_RECORD, training_record_of

    model, params = tiny
    metadata = {"trained_elements": [1, 6, 8], "trained_charges": [0.0]}
    assert training_record_of(None) is NO_TRAINING_RECORD
    assert training_record_of(metadata) == TrainingRecord.from_metadata(metadata)
    with pytest.raises(TypeError, match="training_record must be a TrainingRecord, a checkpoint's metadata dict or "
                                        "None, received list"):
        training_record_of([1, 6, 8])
    fluoro = np.array([9, 1])
    positions = np.array([[0.0, 0.0, 0.0], [0.92, 0.0, 0.0]])
    with pytest.warns(PhysNetInputWarning, match=r"F .*never occurred in this model's training data"):
        predict(model, params, fluoro, positions, training_record=metadata)
    with warnings_as_errors():
        predict(model, params, fluoro, positions, training_record=None)
    atoms = ase.Atoms(numbers=fluoro, positions=positions)
    atoms.calc = PhysNetCalculator(model, params, training_record=metadata)
    with pytest.warns(PhysNetInputWarning, match=r"F .*never occurred in this model's training data"):
        atoms.get_potential_energy()


def test_predict_and_the_calculator_judge_the_distances_of_their_structure(tiny):
    """A C-H bond stretched to 2.2 Å is named; methanol as it is passes (O-H pairs, never recorded, are not judged)."""
    from physnetjax import PhysNetCalculator, predict

    model, params = tiny
    with warnings_as_errors():
        predict(model, params, METHANOL, METHANOL_R, training_record=DOMAIN)
    with pytest.warns(PhysNetInputWarning, match=STRETCHED_H):
        predict(model, params, METHANOL, moved_h(2.0), training_record=DOMAIN)
    atoms = ase.Atoms(numbers=METHANOL, positions=moved_h(2.0))
    atoms.calc = PhysNetCalculator(model, params, training_record=DOMAIN)
    with pytest.warns(PhysNetInputWarning, match=STRETCHED_H):
        atoms.get_potential_energy()


@pytest.mark.parametrize("entry", ["optimize_geometry", "harmonic"])
def test_an_optimised_geometry_is_judged_too(entry, tiny, monkeypatch):
    """A minimum of the model where training never put the atoms (here, the optimiser is made to end with a C-H pair
    of 0.82 Å): the start geometry passes, the optimised one is named."""
    from physnetjax.spectra.optimize import OptimizationResult

    optimize, harmonic = (importlib.import_module(f"physnetjax.spectra.{name}") for name in ("optimize", "harmonic"))

    model, params = tiny

    def ends_compressed(energy_fn, positions, args=(), **settings):
        return OptimizationResult(positions=moved_h(0.75), energy=0.0, fmax=0.0, steps=1)

    monkeypatch.setattr(optimize, "minimize", ends_compressed)
    monkeypatch.setattr(harmonic, "minimize", ends_compressed)
    run = optimize.optimize_geometry if entry == "optimize_geometry" else harmonic.harmonic
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(model, params, METHANOL, METHANOL_R, training_record=TrainingRecord.from_metadata(DOMAIN))
    assert [text for text in messages(caught) if "extrapolates" in text] == [
        "optimised geometry: atoms 0 (C) and 2 (H) are 0.818 Å apart; the training data's shortest C-H distance was "
        "1 Å: the model extrapolates here (interatomic distances more than 10% outside those of its training data)"]


@pytest.mark.parametrize("cutoff", [4.0, 5.0], ids=["from-the-neighbor-list", "record-beyond-the-model-cutoff"])
def test_the_calculator_names_the_first_structure_of_a_composition_that_leaves_the_training_distances(tiny, cutoff):
    """An ASE run drifting out of the training data used to be judged on its first structure only: now every
    structure is, and the first one outside is named with its count, once per composition. A record of the model's
    cutoff (4 Å) is judged from the calculator's own neighbor list, one reaching farther from the positions."""
    from physnetjax import PhysNetCalculator
    from physnetjax.distance_domain import TrainingDistancesWarning

    model, params = tiny
    domain = DistanceDomain(cutoff, {(1, 6): 1.0}, {1: 1.2})
    calc = PhysNetCalculator(model, params, training_record=TrainingRecord(distances=domain))
    methyl = np.array([6, 1, 1, 1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for numbers, positions in [(METHANOL, METHANOL_R), (METHANOL, moved_h(1.1)), (METHANOL, moved_h(2.0)),
                                   (METHANOL, moved_h(2.5)), (METHANOL, METHANOL_R), (methyl, METHANOL_R[[0, 2, 3, 4]]),
                                   (methyl, moved_h(2.0)[[0, 2, 3, 4]]), (methyl, moved_h(3.0)[[0, 2, 3, 4]])]:
            atoms = ase.Atoms(numbers=numbers, positions=positions)
            atoms.calc = calc
            atoms.get_forces()
    said = [w for w in caught if issubclass(w.category, TrainingDistancesWarning)]
    assert [str(w.message) for w in said] == [
        "PhysNetCalculator, structure 3 it evaluated: atom 2 (H) has its nearest neighbour 2.18 Å away; the training "
        "data's longest nearest-neighbour distance of H was 1.2 Å: the model extrapolates here (interatomic distances "
        "more than 10% outside those of its training data); later structures of CH4O outside them are not reported "
        "again",
        "PhysNetCalculator, structure 7 it evaluated: atom 1 (H) has its nearest neighbour 2.18 Å away; the training "
        "data's longest nearest-neighbour distance of H was 1.2 Å: the model extrapolates here (interatomic distances "
        "more than 10% outside those of its training data); later structures of CH3 outside them are not reported "
        "again"]


def test_md_judges_every_saved_frame_against_the_training_distances(tiny, tmp_path):
    """MD used to judge its start geometry only. With the model's forces zero (an untrained output head) the atoms
    move in straight lines, r(t) = r(0) + p t / m: H 2 leaves its carbon at 5.3 mÅ/fs (C recoiling), so its nearest
    neighbour passes the record's 1.2 Å × 1.1 after ~40 fs. Each frame's logged excursion is checked against that
    motion (float32 positions: 1e-5 relative), the first frame outside warns once with its step, the report counts
    them; a start geometry already outside warns at the start only. Chunks of 6 frames: the first frame outside
    (step 80) is the second of its chunk, whose first frame is inside."""
    from physnetjax.distance_domain import TrainingDistancesWarning
    from physnetjax.jsonlines import read_log
    from physnetjax.units import ASE_TIME_UNIT_FS

    model, params = tiny
    record = TrainingRecord.from_metadata(DOMAIN)
    atoms = ase.Atoms(numbers=METHANOL, positions=METHANOL_R)
    masses = atoms.get_masses()
    bond = (METHANOL_R[2] - METHANOL_R[0]) / np.linalg.norm(METHANOL_R[2] - METHANOL_R[0])
    momenta = np.zeros((6, 3))  # amu Å/fs
    momenta[2], momenta[0] = masses[2] * 0.0053 * bond, -masses[2] * 0.0053 * bond
    atoms.set_momenta(momenta * ASE_TIME_UNIT_FS)
    out = tmp_path / "md.xyz"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = simulate(model, params, atoms, ensemble="nve", timestep_fs=0.5, steps=200, save_every=10,
                          chunk_frames=6, out=str(out), training_record=record)
    steps = np.arange(10, 201, 10)
    expected = []
    for t_fs in 0.5 * steps:
        r = METHANOL_R + momenta / masses[:, None] * t_fs
        d = np.linalg.norm(r[:, None] - r[None], axis=-1) + np.diag(np.full(6, np.inf))
        d[d >= 5.0] = np.inf
        nearest_h = max(d[k].min() for k in range(6) if METHANOL[k] == 1)
        shortest_ch = min(d[a, b] for a in range(6) for b in range(6) if (METHANOL[a], METHANOL[b]) == (6, 1))
        expected.append(max(nearest_h / 1.2 - 1.0, 1.0 - shortest_ch / 1.0, 0.0))
    expected = np.array(expected)
    outside = expected > 0.1
    assert 0 < outside.sum() < len(steps) and not outside[0]  # the run starts inside and leaves
    logged = [line["distance_excursion"] for line in read_log(f"{out}.jsonl")]
    assert logged == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert [frame.info["distance_excursion"] for frame in ase.io.read(out, ":")] == pytest.approx(logged, rel=1e-12)
    first = int(steps[np.argmax(outside)])
    assert first == 80  # the second frame of the second chunk (steps 70-120)
    said = [str(w.message) for w in caught if issubclass(w.category, TrainingDistancesWarning)]
    assert len(said) == 1 and said[0].startswith(f"MD left its training data's interatomic distances at step {first}: "
                                                 "atom 2 (H) has its nearest neighbour ")
    assert (report.frames_outside_training, report.first_outside_step) == (int(outside.sum()), first)
    assert report.largest_distance_excursion == pytest.approx(expected.max(), rel=1e-5)
    assert (f"training distances: {int(outside.sum())} of 20 saved frame(s) more than 10% outside them, the first at "
            f"step {first} (largest excursion {expected.max():.1%}): the model extrapolates there") in report.lines()
    inside = dataclasses.replace(report, frames_outside_training=0, first_outside_step=None)
    lines = [line for line in dataclasses.replace(inside, largest_distance_excursion=0.05).lines()
             if line.startswith("training distances")]
    assert lines == ["training distances: every saved frame within their 10% margin (largest excursion 5.0%)"]
    assert "training distances: every saved frame within them" in dataclasses.replace(
        inside, largest_distance_excursion=0.0).lines()
    assert not any(line.startswith("training distances") for line in dataclasses.replace(
        inside, frames_outside_training=None, largest_distance_excursion=None).lines())
    atoms.positions = moved_h(2.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = simulate(model, params, atoms, ensemble="nve", timestep_fs=0.5, steps=20, save_every=10,
                          chunk_frames=2, training_record=record)
    said = [str(w.message) for w in caught if issubclass(w.category, TrainingDistancesWarning)]
    assert len(said) == 1 and said[0].startswith("MD start geometry: atom 2 (H)")
    assert report.frames_outside_training == 2
