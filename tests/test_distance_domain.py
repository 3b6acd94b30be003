"""The training data's interatomic distances: recorded against a brute-force double loop, and judged so that frames of
the training distribution stay silent while stretched bonds and compressed pairs are named."""

import itertools
import json
import re
from pathlib import Path

import ase.io
import jax
import numpy as np
import pytest

from conftest import warnings_as_errors

from physnetjax import TrainingRecord, load_checkpoint, predict
from physnetjax.data import load_dataset
from physnetjax.data.dataset import bundled_dataset_path
from physnetjax.data.split import random_split
from physnetjax.distance_domain import DOMAIN_MARGIN, TRAINED_DISTANCES_KEY, DistanceDomain, unique_pairs
from physnetjax.errors import PhysNetInputWarning
from physnetjax.pretrained import ethanol_ir_geometry_path, example_geometry_path, example_model_path

DATA = Path(__file__).parent / "data" / "train_ethanol64.npz"


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def brute_force(frames, cutoff):
    """({(Z_a, Z_b): shortest distance}, {Z: longest nearest-neighbour distance, ∞ without a neighbour}, {Z: most
    neighbours}) of ``frames`` [(Z, R, cell or None, pbc or None)], every pair and periodic image |shift| ≤ 4 cells
    (each image one neighbour), float64 loops."""
    shortest, longest, most = {}, {}, {}
    for z, r, cell, pbc in frames:
        periodic = np.zeros(3, bool) if pbc is None else np.asarray(pbc, bool)
        ranges = [range(-4, 5) if p else range(1) for p in periodic]
        shifts = [np.asarray(s, np.float64) @ cell if cell is not None else np.zeros(3)
                  for s in itertools.product(*ranges)]
        for i in range(len(z)):
            nearest, neighbours = np.inf, 0
            for j in range(len(z)):
                for shift in shifts:
                    if i == j and not shift.any():
                        continue
                    d = float(np.sqrt(np.sum((r[j] + shift - r[i]) ** 2)))
                    if d < cutoff:
                        nearest, neighbours = min(nearest, d), neighbours + 1
                        pair = (min(int(z[i]), int(z[j])), max(int(z[i]), int(z[j])))
                        shortest[pair] = min(shortest.get(pair, np.inf), d)
            longest[int(z[i])] = max(longest.get(int(z[i]), -np.inf), nearest)
            most[int(z[i])] = max(most.get(int(z[i]), 0), neighbours)
    return shortest, longest, most


@pytest.fixture(scope="module")
def ethanol():
    """The bundled ethanol set (2000 frames of 500 K GFN2-xTB MD) split as the trainer splits it by default."""
    data = load_dataset([str(bundled_dataset_path())])
    split = random_split(len(data), 0.1, 0.1, 0)
    train = data.subset(split["train"])
    domain = DistanceDomain.of_frames(train.Z, train.R, train.N, 5.0)
    return data, split, domain


def mixed_frames():
    """Four ethanol frames, a padded water, a lone F beside water (no neighbour within the cutoff), a triclinic
    cell whose atoms meet only as periodic images, and a slab periodic along two directions."""
    with np.load(DATA) as npz:
        frames = [(npz["Z"][k], npz["R"][k].astype(np.float64), None, None) for k in range(4)]
    water = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    frames.append((np.array([8, 1, 1]), water, None, None))
    frames.append((np.array([8, 1, 1, 9]), np.vstack([water, [[0.0, 0.0, 7.0]]]), None, None))
    cell = np.array([[3.1, 0.0, 0.0], [0.6, 2.9, 0.0], [0.3, -0.4, 3.3]])
    fractional = np.array([[0.02, 0.03, 0.01], [0.97, 0.05, 0.96], [0.1, 0.93, 0.5], [0.55, 0.5, 0.98]])
    frames.append((np.array([6, 1, 1, 8]), fractional @ cell, cell, (True, True, True)))
    slab = np.array([[2.7, 0.0, 0.0], [0.0, 2.6, 0.0], [0.0, 0.0, 0.0]])
    frames.append((np.array([8, 1, 1]), np.array([[0.1, 0.1, 0.0], [2.5, 0.2, 0.3], [0.2, 2.45, -0.4]]), slab,
                   (True, True, False)))
    return frames


def padded(frames):
    """(Z, R, N, cells) of ``frames`` padded to 9 atoms; padding at R = 0 (it must not count)."""
    m = len(frames)
    z, r, cells = np.zeros((m, 9), np.int32), np.zeros((m, 9, 3)), np.zeros((m, 3, 3))
    for k, (zk, rk, cell, pbc) in enumerate(frames):
        z[k, :len(zk)], r[k, :len(zk)] = zk, rk
        if cell is not None:
            cells[k] = cell * np.asarray(pbc, bool)[:, None]
    return z, r, np.array([len(f[0]) for f in frames]), cells


@pytest.mark.parametrize("cutoff", [3.0, 5.0])
@pytest.mark.parametrize("dense_atoms_max", [256, 4], ids=["dense", "cell-list"])
def test_the_record_is_that_of_a_double_loop_over_all_pairs_and_images(cutoff, dense_atoms_max, monkeypatch):
    """Isolated frames as one dense array of pairs, and (wider than the dense limit) one by one through the cell
    list the periodic ones take."""
    monkeypatch.setattr("physnetjax.distance_domain._DENSE_ATOMS_MAX", dense_atoms_max)
    frames = mixed_frames()
    shortest, longest, most = brute_force(frames, cutoff)
    domain = DistanceDomain.of_frames(*padded(frames)[:3], cutoff, cells=padded(frames)[3])
    assert domain.cutoff == cutoff and set(domain.shortest) == set(shortest)
    for pair, d in shortest.items():
        assert domain.shortest[pair] == pytest.approx(d, rel=1e-12), pair
    assert set(domain.longest_nearest) == set(longest) and np.isinf(longest[9]) and np.isinf(domain.longest_nearest[9])
    for z, d in longest.items():
        assert domain.longest_nearest[z] == pytest.approx(d, rel=1e-12), z
    assert domain.most_neighbours == most and most[9] == 0  # the lone F: none
    r = frames[6][1]
    assert np.linalg.norm(r[3] - r[0]) > 3.0 and shortest[(6, 8)] < 1.5  # C and O meet only across a face
    cell_only = brute_force(frames[6:7], cutoff)[2]  # the triclinic cell alone: more neighbours than any molecule has
    assert cell_only[6] > 8 and cell_only == {z: most[z] for z in cell_only}


def test_the_record_survives_json_with_unbounded_neighbours_as_null():
    domain = DistanceDomain.of_frames(*padded(mixed_frames())[:3], 5.0, cells=padded(mixed_frames())[3])
    stored = json.loads(json.dumps(domain.to_metadata(), allow_nan=False))
    assert stored["longest_nearest_neighbour"]["9"] is None and "1-6" in stored["shortest"]
    assert DistanceDomain.from_metadata(stored) == domain
    assert TrainingRecord.from_metadata({"source_metadata": {TRAINED_DISTANCES_KEY: stored}}).distances == domain


def test_held_out_frames_of_the_training_distribution_are_silent(ethanol):
    """The margin's own measurement (DOMAIN_MARGIN): the held-out frames of the split stay inside, one by one and
    counted, isolated and in a vacuum box (periodic, images beyond the cutoff)."""
    data, split, domain = ethanol
    held = data.subset(np.concatenate([split["valid"], split["test"]]))
    record = TrainingRecord(distances=domain)
    with warnings_as_errors():
        record.check_dataset(held.Z, held.N, held.Q, positions=held.R, cells=held.cell)
        record.check_dataset(held.Z, held.N, held.Q, positions=held.R, cells=np.broadcast_to(np.eye(3) * 30.0,
                                                                                              held.cell.shape))
        for k in range(0, len(held), 20):
            record.check_distances(held.Z[k], held.R[k])
    flagged, excursion, text = domain.outside(held.Z, held.R, held.N)
    assert not flagged.any() and text is None and np.all(excursion <= DOMAIN_MARGIN)


def ch_bond(z, r):
    """(C, H) of the first hydrogen bonded to a carbon (nearest atom a carbon)."""
    for h in np.nonzero(z == 1)[0]:
        d = np.linalg.norm(r - r[h], axis=1)
        d[h] = np.inf
        if z[np.argmin(d)] == 6:
            return int(np.argmin(d)), int(h)
    raise AssertionError("no C-H bond")


def test_a_stretched_bond_and_a_compressed_pair_are_named(ethanol):
    """On ethanol at its minimum (C-H 1.09-1.10 Å): one C-H bond 30 % longer, or that H pressed to 0.8× the
    training data's shortest C-H distance."""
    data, split, domain = ethanol
    train = data.subset(split["train"])
    distances = np.linalg.norm(train.R[:, :, None] - train.R[:, None], axis=-1)  # every molecule whole, 9 atoms
    distances[:, np.arange(9), np.arange(9)] = np.inf
    c_h = (train.Z[:, :, None] == 6) & (train.Z[:, None] == 1)
    shortest_ch = distances[c_h].min()
    longest_h = distances.min(axis=2)[train.Z == 1].max()
    atoms = ase.io.read(ethanol_ir_geometry_path())
    z, r = atoms.numbers, atoms.positions
    c, h = ch_bond(z, r)
    bond = r[h] - r[c]
    record = TrainingRecord(distances=domain)
    stretched = r.copy()
    stretched[h] = r[c] + 1.3 * bond
    with pytest.warns(PhysNetInputWarning) as caught:
        record.check_distances(z, stretched, where="frame 7")
    assert len(caught) == 1
    assert str(caught[0].message) == (
        f"frame 7: atom {h} (H) has its nearest neighbour {1.3 * np.linalg.norm(bond):.3g} Å away; the training "
        f"data's longest nearest-neighbour distance of H was {longest_h:.3g} Å: the model extrapolates here "
        "(interatomic distances more than 10% outside those of its training data)")
    compressed = r.copy()
    compressed[h] = r[c] + 0.8 * shortest_ch * bond / np.linalg.norm(bond)
    with pytest.warns(PhysNetInputWarning, match=re.escape(
            f"atoms {c} (C) and {h} (H) are {0.8 * shortest_ch:.3g} Å apart; the training data's shortest C-H "
            f"distance was {shortest_ch:.3g} Å: the model extrapolates here")):
        record.check_distances(z, compressed)
    centroid = r.mean(axis=0)
    with pytest.warns(PhysNetInputWarning, match=r"has its nearest neighbour .* \(and \d more such atom\(s\)\)"):
        record.check_distances(z, centroid + 1.3 * (r - centroid))  # every bond 30 % longer
    with warnings_as_errors():  # the minimum itself, and a pair just inside the margin
        record.check_distances(z, r)
        inside = r.copy()
        inside[h] = r[c] + 1.01 * (1 - DOMAIN_MARGIN) * shortest_ch * bond / np.linalg.norm(bond)
        record.check_distances(z, inside)


def test_frames_outside_are_counted_with_the_first_named(ethanol):
    data, split, domain = ethanol
    frames = data.subset(split["test"][:6])
    r = frames.R.copy()
    for k in (2, 4):
        c, h = ch_bond(frames.Z[k], r[k])
        r[k, h] = r[k, c] + 1.6 * (r[k, h] - r[k, c])
    with pytest.warns(PhysNetInputWarning) as caught:
        TrainingRecord(distances=domain).check_dataset(frames.Z, frames.N, frames.Q, positions=r, cells=frames.cell,
                                                       where="--data")
    said = [str(w.message) for w in caught]
    assert len(said) == 1 and said[0].startswith("--data: 2 of 6 frames (first frame 2: atom ")
    assert said[0].endswith("hold interatomic distances more than 10% outside those of this model's training data; "
                            "the model extrapolates there")


def test_no_record_no_check_and_unseen_pairs_are_not_judged(ethanol):
    """An old checkpoint (no trained_distances) is silent, and so is a pair of elements never seen together."""
    data, split, domain = ethanol
    z, r = data.Z[0], data.R[0]
    centroid = r.mean(axis=0)
    with warnings_as_errors():
        TrainingRecord.from_metadata({"trained_elements": [1, 6, 8]}).check_distances(z, centroid + 2 * (r - centroid))
        TrainingRecord.from_metadata({TRAINED_DISTANCES_KEY: "garbled"}).check_distances(z, 0.5 * r)
        only_ch = DistanceDomain(5.0, {(1, 6): domain.shortest[(1, 6)]}, {})
        TrainingRecord(distances=only_ch).check_distances(np.array([1, 8]), np.array([[0.0, 0, 0], [0.6, 0, 0]]))
    assert TrainingRecord.from_metadata({"trained_elements": [1, 6, 8]}).distances is None


def test_periodic_images_count_as_neighbours_and_as_pairs(ethanol):
    """An atom close to its own image in a narrow cell is a pair of its element with itself."""
    _, _, domain = ethanol
    record = TrainingRecord(distances=domain)
    with pytest.warns(PhysNetInputWarning, match=r"atom 0 \(H\) is 0.9 Å from its own periodic image; the training "
                                                  r"data's shortest H-H distance was"):
        record.check_distances(np.array([1]), np.zeros((1, 3)), cell=np.diag([0.9, 10.0, 10.0]),
                               pbc=(True, False, False))
    with pytest.warns(PhysNetInputWarning, match=r"atom 0 \(H\) has no neighbour within the cutoff 5 Å"):
        record.check_distances(np.array([1]), np.zeros((1, 3)))


def test_an_ensembles_domain_is_where_every_member_was_trained():
    """Per pair the largest shortest distance, per element the smallest longest nearest neighbour and the smallest
    most neighbours; what some member lacks is left out, so all counts beside a member recorded without them
    (hand-made domains: the values are the test's own)."""
    a = DistanceDomain(5.0, {(1, 6): 0.95, (1, 8): 0.88, (6, 6): 1.40}, {1: 1.27, 6: 1.18, 8: np.inf},
                       {1: 8, 6: 12, 8: 0})
    b = DistanceDomain(5.0, {(1, 6): 0.97, (1, 8): 0.86, (8, 8): 2.2}, {1: np.inf, 6: 1.20, 8: 1.09, 9: 1.4},
                       {1: 9, 6: 10, 9: 3})
    assert DistanceDomain.intersection([a, b]) == DistanceDomain(5.0, {(1, 6): 0.97, (1, 8): 0.88},
                                                                 {1: 1.27, 6: 1.18, 8: 1.09}, {1: 8, 6: 10})
    assert DistanceDomain.intersection([a]) == a
    old = DistanceDomain(5.0, a.shortest, a.longest_nearest)
    assert DistanceDomain.intersection([a, old]) == old and old.most_neighbours == {}


def fcc_copper(lattice_scale=1.0, rattle=0.0, seed=0):
    """(Z (32,), R (32, 3) Å, cell (3, 3) Å, pbc): a 2×2×2 cubic fcc Cu cell, a = 3.61 Å × ``lattice_scale``, atoms
    displaced by a normal ``rattle`` (Å) of ``seed``."""
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.61 * lattice_scale, cubic=True).repeat(2)
    if rattle:
        atoms.rattle(rattle, seed=seed)
    return atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc


@pytest.fixture(scope="module")
def copper():
    """The domain (r_c = 5 Å) of 8 thermal-like fcc Cu cells, a = 3.61 Å, atoms rattled by 0.08 Å: each atom has the 42
    neighbours of the first three shells, some 1-5 more of the fourth (5.1 Å)."""
    cells = [fcc_copper(rattle=0.08, seed=k) for k in range(8)]
    return DistanceDomain.of_frames(np.stack([c[0] for c in cells]), np.stack([c[1] for c in cells]), np.full(8, 32),
                                    5.0, cells=np.stack([c[2] for c in cells]))


@pytest.mark.parametrize("lattice_scale, neighbours", [(0.95, 54), (0.85, 78)])
def test_a_compressed_crystal_warns_by_its_neighbour_counts_where_its_distances_would_not(copper, lattice_scale,
                                                                                          neighbours):
    """fcc Cu compressed to 0.86 and 0.61 of its volume: every atom has more neighbours within the cutoff than any
    of the training cells' (the fourth shell, and the fifth, come inside 5 Å), while its nearest neighbours stay
    within the margin of the rattled cells' shortest and longest distances."""
    z, r, cell, pbc = fcc_copper(lattice_scale)
    distances_only = DistanceDomain(copper.cutoff, copper.shortest, copper.longest_nearest)
    assert distances_only.excursion(z, r, cell, pbc) == (pytest.approx(0.0, abs=0.05), None)
    most = copper.most_neighbours[29]
    assert 42 < most < 48
    assert copper.excursion(z, r, cell, pbc)[0] == pytest.approx(neighbours / most - 1.0, rel=1e-12)
    with pytest.warns(PhysNetInputWarning, match=re.escape(
            f"atom 0 (Cu) has {neighbours} neighbours within the cutoff 5 Å; the training data's most neighbours of "
            f"Cu was {most} (and 31 more such atom(s)): the model extrapolates here")):
        TrainingRecord(distances=copper).check_distances(z, r, cell, pbc)
    with warnings_as_errors():  # the training lattice, rattled otherwise
        TrainingRecord(distances=copper).check_distances(*fcc_copper(rattle=0.08, seed=99))


def test_one_neighbour_more_than_trained_is_silent_and_ten_percent_more_from_ten_on():
    """n > n_max + max(1, 0.1 n_max) warns: with 4 trained neighbours of H, 5 stay silent and 6 warn; with 20, 22 stay
    silent and 23 warn (an isolated H at the centre of a ring of H, all within 2.5 Å of each other; hand-made
    domain)."""
    def h_among(neighbours):
        ring = [[np.cos(t), np.sin(t), 0.0] for t in np.linspace(0, 2 * np.pi, neighbours, endpoint=False)]
        return np.full(neighbours + 1, 1), np.vstack([[0.0, 0.0, 0.0], 1.2 * np.array(ring)])

    for most, silent, loud in ((4, 5, 6), (20, 22, 23)):
        record = TrainingRecord(distances=DistanceDomain(2.5, {}, {}, {1: most}))
        with warnings_as_errors():
            record.check_distances(*h_among(silent))
        with pytest.warns(PhysNetInputWarning, match=re.escape(
                f"atom 0 (H) has {loud} neighbours within the cutoff 2.5 Å; the training data's most neighbours of H "
                f"was {most}")):
            record.check_distances(*h_among(loud))


def test_a_record_from_before_the_counts_loads_and_leaves_them_unjudged(copper):
    """A checkpoint written before ``most_neighbours`` reads as a domain without counts: the compressed cell that
    warns by its counts is silent there, the distances still judged; written again, the key is there."""
    stored = json.loads(json.dumps(copper.to_metadata(), allow_nan=False))
    assert stored["most_neighbours"] == {"29": copper.most_neighbours[29]}
    del stored["most_neighbours"]
    old = TrainingRecord.from_metadata({TRAINED_DISTANCES_KEY: stored}).distances
    assert old == DistanceDomain(copper.cutoff, copper.shortest, copper.longest_nearest) and old.most_neighbours == {}
    assert old.to_metadata()["most_neighbours"] == {}
    z, r, cell, pbc = fcc_copper(0.85)
    with warnings_as_errors():
        TrainingRecord(distances=old).check_distances(z, r, cell, pbc)
    with pytest.warns(PhysNetInputWarning, match=r"atoms \d+ \(Cu\) and \d+ \(Cu\) are 1.74 Å apart"):
        TrainingRecord(distances=old).check_distances(z, 0.8 * r, 0.8 * cell, pbc)


PRETRAINED_FRAMES = Path(__file__).parent / "data" / "pretrained_training_frames.npz"
"""The training frames of the shipped co2 and ethanol_ir models outside the bundled ethanol set (their data lies
outside the repository), positions as their files hold them: co2's 400 (the train part of random_split(500, 0.1, 0.1,
seed=0) of ../shared/data/co2_gfn2_500K.npz) and ethanol_ir's 1769 in ../shared/data/ethanol_gfn2_500K.npz, nm300.npz
and nm100.npz (frames 2000-4199 of its files in its order; the train part of random_split(4200, 0.1, 0.1, seed=0)),
as scripts/record_pretrained_distances.py reads them."""

SHIPPED = ["ethanol", "co2", "ethanol_ir"]


def shipped_training_frames(name):
    """(Z (n,), R (M, n, 3) Å) of the training frames of shipped model ``name``: those of the bundled ethanol set (its
    first file) in the trainer's split, then those of :data:`PRETRAINED_FRAMES`."""
    parts = []
    if name != "co2":
        bundled = load_dataset([str(bundled_dataset_path())])
        train = random_split({"ethanol": 2000, "ethanol_ir": 4200}[name], 0.1, 0.1, 0)["train"]
        z = bundled.Z[0]
        assert (bundled.Z == z).all()
        parts.append(bundled.R[train[train < len(bundled)]])
    if name != "ethanol":
        with np.load(PRETRAINED_FRAMES) as npz:
            z = npz[f"{name}_Z"]
            parts.append(npz[f"{name}_R"])
    return z, np.concatenate(parts)


def brute_force_frames(z, r, cutoff):
    """:func:`brute_force` of isolated frames of one composition: Z (n,), R (M, n, 3); the double loop over atoms
    vectorised over frames, float64. Returns (shortest, longest nearest, most neighbours)."""
    shortest, nearest, neighbours = {}, np.full(r.shape[:2], np.inf), np.zeros(r.shape[:2], np.int64)
    for i in range(len(z)):
        for j in range(i + 1, len(z)):
            d = np.sqrt(np.sum((r[:, j] - r[:, i]) ** 2, axis=-1))
            d[d >= cutoff] = np.inf
            pair = (min(int(z[i]), int(z[j])), max(int(z[i]), int(z[j])))
            if np.isfinite(d).any():
                shortest[pair] = min(shortest.get(pair, np.inf), float(d.min()))
            nearest[:, i], nearest[:, j] = np.minimum(nearest[:, i], d), np.minimum(nearest[:, j], d)
            neighbours[:, i] += np.isfinite(d)
            neighbours[:, j] += np.isfinite(d)
    return (shortest, {int(e): float(nearest[:, z == e].max()) for e in np.unique(z)},
            {int(e): int(neighbours[:, z == e].max()) for e in np.unique(z)})


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_model_records_the_distances_of_its_training_frames(name):
    """The shipped models were trained before the trainer recorded the distance domain; the record
    scripts/record_pretrained_distances.py added to each (distances and neighbour counts) is that of a double loop
    over its training frames."""
    model, _, metadata = load_checkpoint(example_model_path(name), with_metadata=True)
    z, r = shipped_training_frames(name)
    assert len(r) == {"ethanol": 1600, "co2": 400, "ethanol_ir": 3360}[name]
    shortest, longest, most = brute_force_frames(z, r, model.cutoff)
    domain = TrainingRecord.from_metadata(metadata).distances
    assert domain.cutoff == model.cutoff == 5.0
    assert set(domain.shortest) == set(shortest) and set(domain.longest_nearest) == set(longest)
    assert domain.most_neighbours == most
    for pair, d in shortest.items():
        assert domain.shortest[pair] == pytest.approx(d, rel=1e-12), pair
    for element, d in longest.items():
        assert domain.longest_nearest[element] == pytest.approx(d, rel=1e-12), element


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_models_readme_geometry_is_silent_and_its_bonds_stretched_by_30_percent_warn(name):
    model, params, metadata = load_checkpoint(example_model_path(name), with_metadata=True)
    atoms = ase.io.read(example_geometry_path(name))
    z, r = atoms.numbers, atoms.positions
    with warnings_as_errors():
        predict(model, params, z, r, training_record=metadata)
    centroid = r.mean(axis=0)
    with pytest.warns(PhysNetInputWarning, match=r"has its nearest neighbour .* the model extrapolates here"):
        predict(model, params, z, centroid + 1.3 * (r - centroid), training_record=metadata)


def test_the_shipped_co2_model_names_a_dimer_by_its_neighbour_counts():
    """co2 was trained on monomers (2 neighbours per atom): a second molecule 3.5 Å away gives each atom 5."""
    model, params, metadata = load_checkpoint(example_model_path("co2"), with_metadata=True)
    atoms = ase.io.read(example_geometry_path("co2"))
    z, r = atoms.numbers, atoms.positions - atoms.positions.mean(axis=0)
    with pytest.warns(PhysNetInputWarning, match=r"has 5 neighbours within the cutoff 5 Å; the training data's most "
                                                 r"neighbours of [CO] was 2"):
        predict(model, params, np.concatenate([z, z]), np.concatenate([r, r + [0.0, 3.5, 0.0]]),
                training_record=metadata)


def full_neighbor_list(z, r, cell, pbc, cutoff):
    """(i, j, shifts in Å, d) of a full list (every pair in both directions, images included), as the calculator
    builds it (vesin)."""
    import vesin

    from physnetjax.validation import neighbor_box

    periodic = np.zeros(3, bool) if pbc is None else np.asarray(pbc, bool)
    cell = np.zeros((3, 3)) if cell is None else np.asarray(cell, np.float64)
    i, j, shifts = vesin.NeighborList(cutoff=cutoff, full_list=True).compute(
        points=r, box=neighbor_box(cell, periodic), periodic=periodic.tolist() if periodic.any() else False,
        quantities="ijS")
    shifts = shifts.astype(np.float64) @ cell
    return i, j, shifts, np.linalg.norm(r[j] - r[i] + shifts, axis=1)


def test_a_structures_neighbor_list_is_judged_as_its_positions_are(ethanol):
    """The calculator's path (a full neighbor list: quick test, then each pair once) gives what the positions' path
    gives, on frames inside and outside the record, isolated and periodic (images of other atoms and of an atom
    itself), with pairs beyond the record's cutoff in the list."""
    _, _, domain = ethanol
    rng = np.random.default_rng(7)
    frames = mixed_frames()
    with np.load(DATA) as npz:
        for k in range(20):
            r = npz["R"][k].astype(np.float64)
            moved = rng.integers(9, size=2)
            r[moved] = r[moved] + rng.normal(scale=0.35, size=(2, 3))  # some pairs pressed, some atoms pulled away
            frames.append((npz["Z"][k], r, None, None))
    outside = 0
    for z, r, cell, pbc in frames:
        expected = domain.excursion(z, r, cell, pbc)
        i, j, shifts, d = full_neighbor_list(z, r, cell, pbc, domain.cutoff + 1.0)
        once = unique_pairs(i, j, shifts)
        assert 2 * once.sum() == len(i)
        excursion, text = domain.pair_excursion(z, i[once], j[once], d[once])
        assert excursion == pytest.approx(expected[0], rel=1e-12, abs=1e-15) and text == expected[1]
        assert domain.holds_neighbors(z, i, j, d) == (expected[1] is None)
        outside += expected[1] is not None
    assert 5 <= outside <= len(frames) - 5  # both kinds of frame were judged


def test_the_calculator_and_the_positions_judge_a_compressed_crystal_alike(copper):
    """The compressed Cu cell, outside by its neighbour counts alone: its neighbor list (each image pair in both
    directions, pairs beyond the cutoff too) gives the positions' excursion and words, the quick test does not let it
    pass, and the ASE calculator (model cutoff = the record's: judged from its own list) warns with those words; the
    training lattice passes both."""
    import ase

    from physnetjax import PhysNet, PhysNetCalculator, init_params
    from physnetjax.distance_domain import TrainingDistancesWarning, outside_message

    for lattice_scale, rattle in ((0.95, 0.0), (1.0, 0.08)):
        z, r, cell, pbc = fcc_copper(lattice_scale, rattle, seed=99)
        expected = copper.excursion(z, r, cell, pbc)
        i, j, shifts, d = full_neighbor_list(z, r, cell, pbc, copper.cutoff + 1.0)
        once = unique_pairs(i, j, shifts)
        assert copper.pair_excursion(z, i[once], j[once], d[once]) == (pytest.approx(expected[0], rel=1e-12),
                                                                        expected[1])
        assert copper.holds_neighbors(z, i, j, d) == (expected[1] is None)
    assert expected[1] is None and copper.excursion(*fcc_copper(0.95))[1] is not None
    model = PhysNet(features=4, max_degree=0, num_iterations=1, num_basis_functions=4, cutoff=copper.cutoff,
                    charges=False, zbl=False, max_atomic_number=29)
    calc = PhysNetCalculator(model, init_params(model, 0), training_record=TrainingRecord(distances=copper))
    z, r, cell, pbc = fcc_copper(0.95)
    atoms = ase.Atoms(numbers=z, positions=r, cell=cell, pbc=pbc)
    atoms.calc = calc
    with pytest.warns(TrainingDistancesWarning) as caught:
        atoms.get_potential_energy()
    assert [str(w.message) for w in caught] == [
        f"{outside_message(copper.excursion(z, r, cell, pbc)[1], 'PhysNetCalculator, structure 1 it evaluated')}; "
        "later structures of Cu32 outside them are not reported again"]
