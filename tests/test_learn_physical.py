"""Physical-validity filter of the active-learning loop (issue 16): a dissociated, a bond-forming and a
collapsed frame are rejected, thermal frames are kept; exploration cuts an MD run's candidates at its first
unphysical frame (never labelled), counts it in the round report, and the option switches the topology check off."""

import functools

import ase
import ase.io
import numpy as np
import pytest

from conftest import ignore_third_party_deprecations

import physnetjax.learn.explore as explore_module
from physnetjax.data import bundled_dataset_path, load_dataset
from physnetjax.jsonlines import start_log
from physnetjax.learn.config import LearnConfig
from physnetjax.learn.inputs import CHECK_FRAMES
from physnetjax.learn.loop import select_and_label
from physnetjax.learn.physical import bonds, unphysical_reason
from physnetjax.learn.report import report_lines, report_rows

# bundled ethanol atom order: find the indices from the element numbers
BUNDLED = load_dataset(bundled_dataset_path())
Z0 = BUNDLED.Z[0, : int(BUNDLED.N[0])]
R0 = BUNDLED.R[0, : int(BUNDLED.N[0])]


def _untrained(config, names):
    """The trainer's stand-in: writes the split the trainer would (the next round grows it), trains nothing."""
    from pathlib import Path

    from physnetjax.data import load_dataset, random_split
    from physnetjax.data.split import load_split, save_split

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    count = len(load_dataset(config.data))
    split = load_split(config.split_file, count) if config.split_file else random_split(count, config.valid, 0,
                                                                                         config.seed)
    save_split(out / "split.npz", split)
    return {"valid": {"forces_mae": 0.1}}

def hydrogen_on(element: int) -> tuple[int, int]:
    """(heavy atom, its nearest H) for the first atom of ``element`` in the bundled frame 0."""
    heavy = int(np.nonzero(Z0 == element)[0][0])
    hydrogens = np.nonzero(Z0 == 1)[0]
    return heavy, int(hydrogens[np.argmin(np.linalg.norm(R0[hydrogens] - R0[heavy], axis=-1))])


def dissociated(base=R0) -> np.ndarray:
    """``base`` with a C-bound H moved 3 Å further out along its C–H bond (a broken bond, as in the 800 K run)."""
    carbon, hydrogen = hydrogen_on(6)
    R = np.array(base, np.float64)
    bond = R[hydrogen] - R[carbon]
    R[hydrogen] += 3.0 * bond / np.linalg.norm(bond)
    return R


def collapsed() -> np.ndarray:
    """Frame 0 with the O-bound H put 0.25 Å from its O (the closest pair seen in the full-size run)."""
    oxygen, hydrogen = hydrogen_on(8)
    R = R0.copy()
    bond = R[hydrogen] - R[oxygen]
    R[hydrogen] = R[oxygen] + 0.25 * bond / np.linalg.norm(bond)
    return R


def test_thermal_frames_are_kept_and_the_reference_has_the_bonds_of_ethanol():
    reference = bonds(Z0, R0)
    # ethanol: C–C, C–O, O–H and five C–H
    assert int(reference.sum()) // 2 == 8
    for k in range(0, len(BUNDLED), 10):
        assert unphysical_reason(BUNDLED.Z[k, :9], BUNDLED.R[k, :9], reference) is None


def test_dissociated_formed_and_collapsed_frames_are_rejected():
    reference = bonds(Z0, R0)
    assert "broken" in unphysical_reason(Z0, dissociated(), reference)
    # two H atoms of one CH3 pushed to 0.7 Å (> 0.5 Å, < 1.3 · 2 · 0.31 Å): a formed H–H bond
    carbon, first = hydrogen_on(6)
    others = [h for h in np.nonzero(Z0 == 1)[0] if h != first and np.linalg.norm(R0[h] - R0[carbon]) < 1.3]
    R = R0.copy()
    R[others[0]] = R[first] + 0.7 * (R[others[0]] - R[first]) / np.linalg.norm(R[others[0]] - R[first])
    assert "formed" in unphysical_reason(Z0, R, reference)
    # too close is rejected even without the topology check
    assert "0.25 Å apart" in unphysical_reason(Z0, collapsed(), None)
    assert unphysical_reason(Z0, collapsed(), None, min_distance=0.2) is None
    assert unphysical_reason(Z0, dissociated(), None) is None



def test_a_diatomic_closer_than_the_minimum_distance_is_rejected():
    """Two atoms are the smallest system the distance check applies to (CO at 0.3 Å: rejected; at 1.13 Å: valid,
    its bond kept)."""
    numbers = np.array([6, 8])
    bonded = np.array([[0.0, 0.0, 0.0], [1.13, 0.0, 0.0]])
    assert unphysical_reason(numbers, bonded, bonds(numbers, bonded)) is None
    assert "atoms 0 and 1 are 0.3 Å apart (< min_distance 0.5 Å)" in unphysical_reason(
        numbers, np.array([[0.0, 0.0, 0.0], [0.3, 0.0, 0.0]]), None)

@pytest.fixture
def fake_md(monkeypatch):
    """explore() with the checkpoint and MD replaced: the run writes frames thermal, thermal, dissociated, thermal."""
    trajectory = [R0, BUNDLED.R[1, :9], dissociated(), BUNDLED.R[2, :9]]

    def simulate(model, params, atoms, *, out, **settings):
        np.testing.assert_allclose(atoms.positions, R0)
        ase.io.write(out, [ase.Atoms(numbers=Z0, positions=R) for R in trajectory])
        start_log(f"{out}.jsonl", [{explore_module.SPREAD_KEY: 1.0 + k} for k in range(len(trajectory))])

    monkeypatch.setattr(explore_module, "load_checkpoint", lambda path, with_metadata: (None, None, {}))
    monkeypatch.setattr(explore_module, "simulate", simulate)
    return BUNDLED.subset(np.array([0]))


def test_md_candidates_end_before_the_first_unphysical_frame_which_is_never_labelled(fake_md, tmp_path):
    config = LearnConfig(temperatures=(800.0,), select=4, min_rmsd=0.001)
    candidates, runs = explore_module.explore(None, fake_md, tmp_path, config, 1)
    assert candidates.origins == ["md-800K.xyz[0]", "md-800K.xyz[1]"]
    assert runs[0]["unphysical_frames"] == 2 and runs[0]["frames"] == 4
    assert runs[0]["first_unphysical"].startswith("md-800K.xyz[2]: bond")
    labelled = []

    def label(atoms):
        labelled.append(atoms.positions.copy())
        return {"E": 0.0, "F": np.zeros((len(atoms), 3))}

    chosen, _, failures = select_and_label(candidates, config, label, 1)
    assert sorted(chosen) == [0, 1] and failures == []
    assert not any(np.allclose(R, dissociated()) for R in labelled)
    summary = {"round": 1, "frames": 10, "selected": 2, "md": runs, "label_failures": [], "valid": {}}
    row = report_rows([summary])[0]
    assert row["unphysical_frames"] == 2
    assert report_lines([row])[0].split()[5] == "unphysical" and report_lines([row])[1].split()[5] == "2"


def test_allow_topology_change_keeps_the_dissociated_frame(fake_md, tmp_path):
    config = LearnConfig(temperatures=(800.0,), allow_topology_change=True)
    candidates, runs = explore_module.explore(None, fake_md, tmp_path, config, 1)
    assert len(candidates.origins) == 4 and runs[0]["unphysical_frames"] == 0


@pytest.mark.parametrize("min_distance, warned", [(0.5, False), (0.3, True)])
def test_md_messages_name_the_loop_settings_and_a_close_contact_is_said_once(monkeypatch, tmp_path, caplog,
                                                                             min_distance, warned):
    """learn's log said 'MD stopped (... max_force=...)', and showed the MD's close-contact warning beside its own
    unphysical-frame message; the MD warning stays where the loop's filter (min_distance < 0.5 Å) would not say it."""
    import warnings

    from physnetjax.errors import CloseContactWarning, displayed
    from physnetjax.md.driver import MDInstabilityError

    seen = {}

    def simulate(model, params, atoms, *, out, names, **settings):
        seen.update(names)
        ase.io.write(out, [ase.Atoms(numbers=Z0, positions=R) for R in (R0, collapsed())])
        start_log(f"{out}.jsonl", [{explore_module.SPREAD_KEY: 1.0}, {explore_module.SPREAD_KEY: 2.0}])
        warnings.warn("MD left the region the model knows", CloseContactWarning)
        raise MDInstabilityError(f"|F| above {displayed('max_force', names)} {settings['max_force']} eV/Å")

    monkeypatch.setattr(explore_module, "load_checkpoint", lambda path, with_metadata: (None, None, {}))
    monkeypatch.setattr(explore_module, "simulate", simulate)
    config = LearnConfig(temperatures=(800.0,), min_distance=min_distance)
    options = {"max_force": "--max-force", "md_steps": "--md-steps", "md_ensemble": "--md-ensemble",
               "timestep_fs": "--timestep", "ensemble": "--ensemble"}
    with warnings.catch_warnings(record=True) as caught, caplog.at_level("WARNING"):
        warnings.simplefilter("always")
        ignore_third_party_deprecations()
        explore_module.explore(None, BUNDLED.subset(np.array([0])), tmp_path, config, 1, options)
    assert seen["max_force"] == "--max-force" and seen["steps"] == "--md-steps" and seen["ensemble"] == "--md-ensemble"
    assert seen["timestep_fs"] == "--timestep" and seen["friction"] == "friction"  # not in names: the setting
    assert "MD stopped (|F| above --max-force 100.0 eV/Å)" in caplog.text
    assert "md-800K.xyz[1]: atoms" in caplog.text  # the loop's own message about the close contact
    assert [w.category for w in caught] == ([CloseContactWarning] if warned else [])
    seen.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CloseContactWarning)
        explore_module.explore(None, BUNDLED.subset(np.array([0])), tmp_path / "api", config, 1)
    assert seen["steps"] == "md_steps" and seen["ensemble"] == "md_ensemble" and seen["max_force"] == "max_force"


@pytest.mark.parametrize("changes, message", [({"min_distance": -0.1}, "min_distance"),
                                              ({"bond_factor": 0.0}, "bond_factor")])
def test_bad_filter_settings_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        LearnConfig(**changes)


def test_cli_filter_is_on_by_default_and_switched_off_by_the_option():
    from physnetjax.learn.__main__ import build_parser

    parser = build_parser()
    default = vars(parser.parse_args([]))
    assert default["allow_topology_change"] is False and default["min_distance"] == 0.5
    assert vars(parser.parse_args(["--allow-topology-change"]))["allow_topology_change"] is True


@functools.lru_cache(maxsize=1)
def _bundled_frames() -> tuple:
    with np.load(bundled_dataset_path()) as bundled:
        return tuple(np.asarray(bundled[key], np.float64) for key in ("R", "E", "F"))


def bundled_labels(atoms) -> dict:
    """The bundled set's labels of its frame nearest ``atoms``: the starting frames' own labels, which the
    learning loop checks its labeller against before anything else."""
    positions, energies, forces = _bundled_frames()
    k = int(np.argmin(np.abs(positions - atoms.positions).max(axis=(1, 2))))
    return {"E": energies[k], "F": forces[k]}


def test_loop_never_labels_a_broken_candidate_and_reports_the_count(monkeypatch, tmp_path):
    """run_learning with the MD faked (thermal, thermal, dissociated, thermal from each start geometry) and the
    training faked (only the loop's bookkeeping runs): the labeller never sees the dissociated frame."""
    import physnetjax.learn.loop as learn_loop
    from physnetjax.learn import run_learning

    def simulate(model, params, atoms, *, out, **settings):
        start = atoms.positions
        trajectory = [start, 1.01 * start, dissociated(start), 0.99 * start]
        ase.io.write(out, [ase.Atoms(numbers=atoms.numbers, positions=R) for R in trajectory])
        start_log(f"{out}.jsonl", [{explore_module.SPREAD_KEY: [1.0, 2.0, 9.0, 3.0][k]} for k in range(4)])

    monkeypatch.setattr(explore_module, "load_checkpoint", lambda path, with_metadata: (None, None, {}))
    monkeypatch.setattr(explore_module, "simulate", simulate)
    monkeypatch.setattr(learn_loop, "train", _untrained)
    labelled = []
    checked = []

    def label(atoms):
        if len(checked) < CHECK_FRAMES:  # the check of the starting labels comes first
            checked.append(atoms)
            return bundled_labels(atoms)
        labelled.append(atoms.positions.copy())
        return {"E": 0.0, "F": np.zeros((len(atoms), 3))}

    config = LearnConfig(out=str(tmp_path / "run"), initial_frames=4, test_frames=0, rounds=1, select=5,
                         min_rmsd=0.001, temperatures=(800.0,), md_steps=40, save_every=10, ensemble=2, valid=1)
    report = run_learning(config, label)
    # the two frames before the dissociation are the only candidates; the one after it is cut too
    assert len(labelled) == 2 and report["rounds"][1]["selected"] == 2
    assert all(unphysical_reason(Z0, R, bonds(Z0, R0)) is None for R in labelled)
    assert [r["unphysical_frames"] for r in report["rounds"]] == [0, 2]


def test_a_round_whose_members_agree_exactly_warns(monkeypatch, tmp_path):
    """An untrained round (its members predicting a constant energy) gives every MD frame the force spread 0: the
    loop ranked those zeros without a word and the report showed 'MD spread mean/max 0.0000 / 0.0000'."""
    import warnings

    import physnetjax.learn.loop as learn_loop
    from physnetjax.errors import PhysNetInputWarning
    from physnetjax.learn import run_learning

    def simulate(model, params, atoms, *, out, **settings):
        trajectory = [atoms.positions, 1.01 * atoms.positions, 0.99 * atoms.positions]
        ase.io.write(out, [ase.Atoms(numbers=atoms.numbers, positions=R) for R in trajectory])
        start_log(f"{out}.jsonl", [{explore_module.SPREAD_KEY: 0.0} for _ in trajectory])

    monkeypatch.setattr(explore_module, "load_checkpoint", lambda path, with_metadata: (None, None, {}))
    monkeypatch.setattr(explore_module, "simulate", simulate)
    monkeypatch.setattr(learn_loop, "train", _untrained)
    config = LearnConfig(out=str(tmp_path / "run"), initial_frames=4, test_frames=0, rounds=1, select=2,
                         min_rmsd=0.001, temperatures=(300.0,), md_steps=20, save_every=10, ensemble=2, valid=1)
    with pytest.warns(PhysNetInputWarning, match=r"round 1: the ensemble's members agree exactly on all \d+ MD "
                                                 r"frames \(force spread 0 eV/Å\)"):
        run_learning(config, bundled_labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PhysNetInputWarning)
        learn_loop._warn_if_members_agree(np.array([0.0, 0.2]), config, 1)

