"""Model predictions for every frame of a dataset, batched and jitted with the trainer's batching.

Frames are packed by :func:`physnetjax.train.batching.iterate_batches` (fixed shapes,
so a whole dataset compiles once), split over the local devices as in the trainer
(:mod:`physnetjax.train.parallel`) and run through :func:`physnetjax.apply_batch`
under one ``jax.jit``. The network runs without the checkpoint's element reference
energies E0; they are added on the host in float64, exactly as the trainer removes
them from the labels::

    E_b = E_b^network + E_b^pair terms + Σ_Z c_bZ E0[Z]      (c_bZ: atoms of element Z in frame b)

so absolute energies of ~10³–10⁴ eV keep float64 precision when the network runs in
float32 (one float32 ulp of 10⁴ eV is ~1 meV).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import numpy as np

from physnetjax import compilation
from physnetjax.calculator import cast_params
from physnetjax.data import Dataset, element_counts
from physnetjax.errors import out_of_memory_as
from physnetjax.neighbors import apply_batch, image_reach
from physnetjax.predict import evaluation_dtype, out_of_memory_error
from physnetjax.train.batching import as_batched, batch_offsets, batch_shapes, iterate_batches
from physnetjax.train.parallel import device_mesh, replicate, shard_batch

OUTPUT_KEYS = ("energy", "forces", "charges", "dipoles", "energy_std", "forces_std", "stress")
"""Model outputs brought back to the host (the spreads only from an ensemble, the stress only from a periodic
batch)."""


@dataclasses.dataclass(frozen=True)
class Predictions:
    """The model's outputs on M frames of a :class:`~physnetjax.data.Dataset` (n atom slots, 0 on padding).

    Fields:
      energy: (M,) float64 total energy in eV, element references E0 included.
      forces: (M, n, 3) eV/Å.
      charges: (M, n) atomic charges in e (None when the model has no charges).
      dipole: (M, 3) e·Å about the coordinate origin (None without charges).
      total_charge: (M,) Σ_i q_i in e (None without charges).
      energy_std: (M,) eV and forces_std: (M, n) eV/Å, the calibrated member spreads of
        a :class:`~physnetjax.ensemble.PhysNetEnsemble` (:mod:`physnetjax.ensemble.model`);
        None for a single model.
      stress: (M, 3, 3) eV/Å³ (σ = (1/V) ∂E/∂ε, positive under tension) of the periodic frames, NaN for the
        molecules; None when no frame is periodic. The dipole of a periodic frame is NaN (it depends on where the
        atoms are wrapped).
      energies: (M, n) float64 per-atom energies in eV, E0[Z_i] included, summing to ``energy`` (the split of
        :mod:`physnetjax.model`); energies_std: (M, n) eV, their calibrated member spread (ensembles). None unless
        asked for.
    """

    energy: np.ndarray
    forces: np.ndarray
    charges: Optional[np.ndarray]
    dipole: Optional[np.ndarray]
    total_charge: Optional[np.ndarray]
    energy_std: Optional[np.ndarray] = None
    forces_std: Optional[np.ndarray] = None
    stress: Optional[np.ndarray] = None
    energies: Optional[np.ndarray] = None
    energies_std: Optional[np.ndarray] = None


_JIT: dict = {}


def _device_apply(network, energies: bool):
    """Jitted ``apply_batch`` of ``network`` vmapped over the leading device axis of a batch; with ``energies`` it
    also returns the per-atom energies (a D3 model's split costs a second forward pass, so only when asked)."""
    keys = OUTPUT_KEYS + (("energies", "energies_std") if energies else ())
    if (network, keys) not in _JIT:
        def apply(params, batch):
            out = apply_batch(network, params, batch)
            return {key: out[key] for key in keys if out.get(key) is not None}

        _JIT[network, keys] = compilation.jit(jax.vmap(apply, in_axes=(None, 0)))
    return _JIT[network, keys]


def check_model_elements(model, dataset) -> None:
    """Refuse a dataset with an atomic number beyond the model's
    :attr:`~physnetjax.PhysNet.supported_max_atomic_number` (ValueError naming the first such frame)."""
    largest, limit = int(dataset.Z.max()), model.supported_max_atomic_number
    if largest > limit:
        frame = int(np.nonzero((dataset.Z > limit).any(axis=1))[0][0])
        raise ValueError(f"{dataset.sources[frame]}: atomic number {largest} exceeds the model's range Z = 1..{limit}"
                         + (" (D3 dispersion has reference data only up to there)"
                            if limit < model.max_atomic_number else ""))


def predict_dataset(model, params, dataset: Dataset, *, batch_size: int = 32, dtype=None,
                    energies: bool = False) -> Predictions:
    """Energies, forces, charges and dipoles of ``model`` on every frame of ``dataset``.

    Args:
      model: a :class:`physnetjax.PhysNet` (legacy-migrated ones included) or a
        :class:`~physnetjax.ensemble.PhysNetEnsemble` (means, plus the spreads); its
        ``element_energies`` (E0, eV) are added on the host in float64. Each molecule is evaluated about its
        centroid (in a box, beside periodic frames: :func:`~physnetjax.train.batching.batch_offsets`); dipoles are
        returned about the origin. Periodic frames are evaluated with their images, and give the stress.
      params: its variables ``{"params": ...}``.
      dataset: the frames (internal units); labels are not used.
      batch_size: molecules per jitted call (over all devices).
      dtype: ``"float32"`` or ``"float64"`` (needs ``jax_enable_x64``); default: the model's precision
        (:func:`~physnetjax.predict.evaluation_dtype`).
      energies: also return the per-atom energies (and an ensemble's spread of them).

    Returns:
      :class:`Predictions` in frame order.

    Raises:
      ValueError: bad ``batch_size`` or ``dtype``, or an atomic number above the model's
        :attr:`~physnetjax.PhysNet.supported_max_atomic_number`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, received {batch_size}")
    dtype = evaluation_dtype(dtype, model, "predict_dataset")
    check_model_elements(model, dataset)
    network = model.clone(element_energies=None)
    dataset = as_batched(dataset, network)
    mesh = device_mesh()
    shapes = batch_shapes(dataset, network, batch_size, mesh.devices.size)
    device_params = replicate(cast_params(params, dtype), mesh)
    apply = _device_apply(network, energies)
    M, n = dataset.Z.shape
    energy, forces = np.zeros(M), np.zeros((M, n, 3))
    atom_energy = np.zeros((M, n)) if energies else None
    atom_energy_std = None
    charges = np.zeros((M, n)) if model.charges else None
    dipole = np.zeros((M, 3)) if model.charges else None
    energy_std = forces_std = None
    stress = np.full((M, 3, 3), np.nan) if shapes.periodic else None
    order = np.arange(M)
    batches = iterate_batches(dataset, order, dataset.E, network, batch_size, shapes, dtype=dtype)
    for start, (batch, _) in zip(range(0, M, batch_size), batches):
        with out_of_memory_as(lambda error: out_of_memory_error(
                network, f"evaluating batches of {batch_size} frames, each device's batch of", shapes.atoms,
                shapes.edges, shapes.pairs, shapes.triplets, error,
                remedy="use a smaller batch_size (eval: --batch-size), or a device with more memory")):
            out = jax.device_get(apply(device_params, shard_batch(batch, mesh)))
        if "energy_std" in out and energy_std is None:
            energy_std, forces_std = np.zeros(M), np.zeros((M, n))
            atom_energy_std = np.zeros((M, n)) if energies else None
        chunk = order[start:start + batch_size]
        for device in range(shapes.num_devices):
            frames = chunk[device * shapes.molecules:(device + 1) * shapes.molecules]
            offset = 0
            for slot, frame in enumerate(frames):
                count = int(dataset.N[frame])
                atoms = slice(offset, offset + count)
                energy[frame] = out["energy"][device, slot]
                if stress is not None and dataset.periodic[frame]:
                    stress[frame] = out["stress"][device, slot]
                forces[frame, :count] = out["forces"][device, atoms]
                if atom_energy is not None:
                    atom_energy[frame, :count] = out["energies"][device, atoms]
                if atom_energy_std is not None:
                    atom_energy_std[frame, :count] = out["energies_std"][device, atoms]
                if charges is not None:
                    charges[frame, :count] = out["charges"][device, atoms]
                    dipole[frame] = out["dipoles"][device, slot]
                if energy_std is not None:
                    energy_std[frame] = out["energy_std"][device, slot]
                    forces_std[frame, :count] = out["forces_std"][device, atoms]
                offset += count
    if model.element_energies is not None:
        e0 = np.asarray(model.element_energies, np.float64)
        energy = energy + element_counts(dataset.Z, len(e0) - 1) @ e0
        if atom_energy is not None:
            atom_energy += np.where(np.arange(n) < dataset.N[:, None], e0[dataset.Z], 0.0)
    if dipole is not None:  # the batches hold each molecule moved by o: μ about the origin is μ_o + Q·o
        reach = image_reach(network)[0] if shapes.periodic else None
        dipole = dipole + dataset.Q[:, None] * batch_offsets(dataset, np.arange(M), reach)
        dipole[dataset.periodic] = np.nan
    total_charge = None if charges is None else charges.sum(axis=1)
    return Predictions(energy=energy, forces=forces, charges=charges, dipole=dipole, total_charge=total_charge,
                       energy_std=energy_std, forces_std=forces_std, stress=stress, energies=atom_energy,
                       energies_std=atom_energy_std)
