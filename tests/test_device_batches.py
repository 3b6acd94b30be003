"""Batches gathered on the device (physnetjax.train.device_batches) against the host-packed batches of
physnetjax.train.batching: the same frames in the same order, and the same loss, gradients, energies
and forces (float64) on molecules of mixed sizes, with a separate pair list, missing labels and an
empty molecule slot."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physnetjax.data import load_npz
from physnetjax.model import PhysNet
from physnetjax.neighbors import apply_batch, periodic_pairs
from physnetjax.predict import init_params
from physnetjax.train.batching import batch_shapes, iterate_batches
from physnetjax.train.config import TrainConfig
from physnetjax.train.device_batches import batch_rows, build_device_frames, frame_rows, gather_batch
from physnetjax.train.loss import loss_weights
from physnetjax.train.optim import make_optimizer, make_schedule, make_steps

from conftest import perturbed_params

MIXED = Path(__file__).parent / "data" / "neighbors_mixed.npz"
FRAMES = np.array([0, 30, 60, 70, 80, 90, 25])  # 9, 3, 15, 30, 13, 16, 3 atoms: 7 frames, the last batch has an empty slot


@pytest.fixture(scope="module")
def setup():
    dataset = load_npz(MIXED)
    has_forces, has_energy = np.ones(len(dataset), bool), dataset.has_E.copy()
    has_forces[70] = False
    has_energy[80] = False
    assert has_energy[FRAMES].sum() == len(FRAMES) - 1
    dataset = dataclasses.replace(dataset, has_F=has_forces, has_E=has_energy)
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=3.0,
                    max_atomic_number=int(dataset.Z.max()), charges=True, coulomb_lr_cutoff=6.0,
                    param_dtype=jnp.float64)
    params = perturbed_params(init_params(model, 0))
    energies = dataset.E - dataset.E.mean()
    shapes = batch_shapes(dataset, model, 4, num_devices=2)
    assert shapes.pairs is not None
    config = TrainConfig(batch_size=4)
    loss_and_grads = make_steps(model, make_optimizer(config, make_schedule(config, 2)), loss_weights(config),
                                "mse", 0.999)[2]
    return dataset, model, params, energies, shapes, loss_and_grads


def test_gathered_batches_give_the_host_batches_results(setup):
    dataset, model, params, energies, shapes, loss_and_grads = setup
    stored = np.array([90, 0, 25, 30, 60, 70, 80, 5])
    frames = jax.device_put(build_device_frames(dataset, stored, energies, model, dtype=np.float64))
    row_of = frame_rows(stored, len(dataset))
    order = np.random.default_rng([0, 1]).permutation(FRAMES)
    host = list(iterate_batches(dataset, FRAMES, energies, model, 4, shapes, seed=[0, 1], dtype=np.float64))
    rows = batch_rows(row_of[order], 4, shapes)
    apply = jax.jit(lambda p, b: apply_batch(model, p, b))
    assert rows.shape == (2, 2, 2) and len(host) == 2
    assert (rows < 0).sum() == 1
    for step, ((host_batch, host_labels), step_rows) in enumerate(zip(host, rows)):
        flat = step_rows.reshape(-1)
        np.testing.assert_array_equal(stored[flat[flat >= 0]], order[4 * step: 4 * step + 4])
        batch, labels = gather_batch(frames, jnp.asarray(step_rows), shapes)
        assert batch.positions.shape == host_batch.positions.shape
        assert batch.dst_idx.shape == host_batch.dst_idx.shape and batch.pair_dst.shape == host_batch.pair_dst.shape
        loss, grads = loss_and_grads(params, batch, labels)
        host_loss, host_grads = loss_and_grads(params, host_batch, host_labels)
        assert float(host_loss) > 0
        np.testing.assert_allclose(float(loss), float(host_loss), rtol=1e-12)
        for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(host_grads)):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        for d in range(shapes.num_devices):
            one = jax.tree_util.tree_map(lambda x, d=d: x[d], batch)
            one_host = jax.tree_util.tree_map(lambda x, d=d: x[d], host_batch)
            out, out_host = apply(params, one), apply(params, jax.device_put(one_host))
            molecules = np.asarray(one_host.molecule_mask)
            np.testing.assert_array_equal(np.asarray(one.molecule_mask), molecules)
            np.testing.assert_allclose(np.asarray(out["energy"])[molecules], np.asarray(out_host["energy"])[molecules],
                                       rtol=1e-12, atol=1e-12)
            atoms, atoms_host = np.asarray(one.atom_mask), np.asarray(one_host.atom_mask)
            np.testing.assert_allclose(np.asarray(out["forces"])[atoms], np.asarray(out_host["forces"])[atoms_host],
                                       rtol=1e-10, atol=1e-12)
            for key in ("F", "F_mask"):
                np.testing.assert_array_equal(np.asarray(labels[key][d])[atoms],
                                              np.asarray(host_labels[key][d])[atoms_host])
            for key in ("E", "E_mask", "num_atoms", "Q", "D_mask"):
                np.testing.assert_array_equal(np.asarray(labels[key][d]), np.asarray(host_labels[key][d]))



def test_batches_hold_each_molecule_about_its_centroid(setup):
    """Training frames 1000 Å from the origin were cast to float32 as stored (a float32 ulp of 6e-5 Å: ~3 meV/Å of
    force error). Both batch builders now move each molecule to its centroid c in float64 first, and take its
    dipole label about c (D − Q·c): a charged molecule shifted by s gives the batches and labels it gives unshifted."""
    dataset, model, _, energies, shapes, _ = setup
    near = dataclasses.replace(dataset, Q=np.ones(len(dataset)), has_D=np.ones(len(dataset), bool))
    shift = np.array([1000.0, -700.0, 1300.0])
    far = dataclasses.replace(near, R=np.where(near.Z[..., None] > 0, near.R + shift, 0.0), D=near.D + shift)
    device = [build_device_frames(d, FRAMES, energies, model, dtype=np.float32) for d in (near, far)]
    np.testing.assert_allclose(device[1].positions, device[0].positions, rtol=0, atol=1e-6)
    np.testing.assert_allclose(device[1].dipoles, device[0].dipoles, rtol=0, atol=1e-4)
    host = [next(iterate_batches(d, FRAMES, energies, model, 4, shapes, dtype=np.float32)) for d in (near, far)]
    np.testing.assert_allclose(host[1][0].positions, host[0][0].positions, rtol=0, atol=1e-6)
    np.testing.assert_allclose(host[1][1]["D"], host[0][1]["D"], rtol=0, atol=1e-4)
    centred = near.R[FRAMES[0], :near.N[FRAMES[0]]] - near.centroids(FRAMES[:1])[0]
    np.testing.assert_allclose(device[0].positions[0, :near.N[FRAMES[0]]], centred, rtol=0, atol=1e-6)


TRAIN_ON_DEVICES = r"""
import json, sys
import jax
sys.path.insert(0, sys.argv[2])
from test_train import tiny_config, read_rows
from physnetjax.train import train
summary = train(tiny_config(sys.argv[1], epochs=2))
print(json.dumps({"devices": jax.device_count(), "num_devices": summary["num_devices"],
                  "valid_loss": [float(r["valid_loss"]) for r in read_rows(sys.argv[1])]}))
"""


@pytest.mark.slow
def test_trainer_on_two_host_devices_matches_one_device(tmp_path):
    """The device-gathered steps sharded over two devices train the same model as on one device."""
    results = {}
    for count in (1, 2):
        env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={count}")
        process = subprocess.run([sys.executable, "-c", TRAIN_ON_DEVICES, str(tmp_path / f"run{count}"),
                                  str(Path(__file__).parent)], env=env, capture_output=True, text=True, timeout=600)
        assert process.returncode == 0, process.stderr[-3000:]
        results[count] = json.loads(process.stdout.strip().splitlines()[-1])
    assert results[2]["devices"] == results[2]["num_devices"] == 2 and results[1]["num_devices"] == 1
    np.testing.assert_allclose(results[2]["valid_loss"], results[1]["valid_loss"], rtol=1e-4)


def test_periodic_batch_shapes_count_the_pair_terms_images_and_refuse_bare_coulomb():
    """On main a periodic frame was batched as an isolated molecule whatever its images, then refused. Periodic data
    now batches with every image within reach: the pair list beyond the cutoff (here the Coulomb long-range cutoff)
    counts its images too, and a charge model's all-pairs Coulomb, infinite in a crystal, is refused by name."""
    from physnetjax.data import DataError

    data = load_npz(Path(__file__).parent / "data" / "train_ethanol64.npz").subset([0])
    extent = np.ptp(data.R[0, : data.N[0]], axis=0).max()
    boxed = dataclasses.replace(data, cell=np.eye(3)[None] * (extent + 6.0))
    base = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=4.0,
                   max_atomic_number=8, charges=True, zbl=False)
    with pytest.raises(DataError, match=r"a charge model's Coulomb term without a long-range cutoff "
                                        r"\(coulomb_lr_cutoff\) sums over all atom pairs, which is infinite in a "
                                        r"crystal .* --no-charges"):
        batch_shapes(boxed, base, 1)
    assert batch_shapes(boxed, base.clone(charges=False), 1).periodic
    n = int(data.N[0])
    pairs = batch_shapes(boxed, base.clone(coulomb_lr_cutoff=10.0), 1).pairs
    images = len(periodic_pairs(data.R[0, :n], boxed.cell[0], 10.0)[0])
    assert images > n * (n - 1)  # each atom meets images of the molecule within 10 Å
    assert pairs == -(-images // 8) * 8