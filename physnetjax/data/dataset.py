"""In-memory datasets of labelled molecules, read from PhysNet ``.npz`` or any ASE-readable file.

A :class:`Dataset` holds M frames zero-padded to n atoms (padded atoms have Z = 0
and sit after the real ones). Everything is converted on reading to the internal
units — Å, eV, eV/Å, e·Å, e — in float64. A frame that lacks a label (an ASE frame
without forces, a file without dipoles) has its ``has_*`` flag False; the trainer
masks it out of the loss instead of filling in zeros.

Every inconsistency is a :class:`DataError` naming the file, the key and the
frame(s); duplicated frames only warn.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from physnetjax.data.frame_digests import dataset_digests
from physnetjax.data.key_mapping import ASE_KEYS, frame_names, frame_value, mapping_text, renamed_npz_keys
from physnetjax.data.remedies import label_remedies
from physnetjax.errors import InputNotFoundError, LengthUnitWarning, warn_caller
from physnetjax.npz_file import NpzReadError, read_npz
from physnetjax.units import dipole_factor, energy_factor, force_factor
from physnetjax.validation import (
    BOND_RATIO_MAX,
    BOND_RATIO_MIN,
    MAX_ABS_COORDINATE,
    MAX_ATOMIC_NUMBER,
    MIN_DISTANCE_ERROR,
    MIN_DISTANCE_WARNING,
    PhysNetInputError,
    PhysNetInputWarning,
    bond_length_ratios,
    close_contacts,
    position_unit_question,
)

LABELS = ("E", "F", "D", "Q", "S")
"""Label keys: energy (M,) eV, forces (M, n, 3) eV/Å, dipole (M, 3) e·Å, total charge (M,) e, stress (M, 3, 3) eV/Å³
(periodic frames only)."""

MAX_ABS_STRESS = 1.0
"""eV/Å³ (160 GPa): a stress label beyond this is refused as a unit slip (kbar or GPa read as eV/Å³)."""

WEIGHT_KEYS = ("config_weight", "config_energy_weight", "config_forces_weight", "config_stress_weight")
"""Per-frame loss weights as MACE names them (extxyz ``atoms.info`` entries, ``.npz`` keys of shape (M,)), the
columns of :attr:`Dataset.weights`: the frame's weight w_k, which multiplies every loss term of frame k, and the
weights of its energy, forces and stress terms alone (1 when absent; finite and ≥ 0)."""

CONFIG_TYPE_KEY = "config_type"
"""The key of a frame's kind (``atoms.info`` in an extxyz, an (M,) array of text in an ``.npz``), as MACE reads it:
``eval`` reports errors per kind (bulk, surface, cluster, ...)."""
DEFAULT_CONFIG_TYPE = "Default"
"""The kind of a frame without :data:`CONFIG_TYPE_KEY` (MACE's name for it)."""

VIRIAL_WEIGHT_KEY = "config_virial_weight"
"""MACE's other name for the stress weight (its virial term): read as ``config_stress_weight``, which a frame that
gives both must give the same value."""


class DataError(PhysNetInputError):
    """A data file is malformed; the message names the file, the key and the frame(s)."""


class DataFileNotFoundError(DataError, InputNotFoundError):
    """A data file that does not exist."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """M labelled molecules, zero-padded to n atoms, internal units, float64.

    Fields:
      Z: (M, n) int32 atomic numbers, 0 for padding.
      R: (M, n, 3) positions in Å.
      N: (M,) int32 number of real atoms.
      E: (M,) energy in eV; F: (M, n, 3) forces in eV/Å; D: (M, 3) dipole in e·Å
        about the coordinate origin; Q: (M,) total charge in e (also a model input).
      has_E, has_F, has_D, has_Q: (M,) bool, whether the frame carries that label
        (the label array holds 0 where it does not).
      sources: (M,) str "file[frame]" of each frame, for messages.
      cell: (M, 3, 3) Å, the periodic cell vectors of each frame as rows, a zero row along a direction
        that is not periodic (all zero, the default, for an isolated molecule). The trainer and ``eval`` take
        frames periodic along all three directions with their images (:mod:`physnetjax.train.batching`).
      unused_cell: (M, 3, 3) Å, the full cell (three vectors spanning a volume) of each frame written with pbc all
        False, zero otherwise: such a frame is read as an isolated cluster, and :func:`warn_unused_cells` warns when its
        atoms would meet their periodic images in that cell (a bulk frame whose pbc was cleared).
      S: (M, 3, 3) eV/Å³, the stress σ = (1/V) ∂E/∂ε of each periodic frame (ASE's sign: positive under tension,
        pressure −tr σ / 3), 0 where ``has_S`` is False; has_S: (M,) bool. Only frames periodic in all three
        directions carry it.
      weights: (M, 4) float64, dimensionless, the per-frame loss weights read from the keys :data:`WEIGHT_KEYS`
        (columns: frame weight w_k, energy, forces and stress weights), all 1 by default. They scale each frame's
        contributions to the training loss (:attr:`term_weights`), never the metrics.
      config_type: (M,) str, each frame's kind (:data:`CONFIG_TYPE_KEY`; :data:`DEFAULT_CONFIG_TYPE` where the file
        gives none), by which ``eval`` breaks down its errors.
    """

    Z: np.ndarray
    R: np.ndarray
    N: np.ndarray
    E: np.ndarray
    F: np.ndarray
    D: np.ndarray
    Q: np.ndarray
    has_E: np.ndarray
    has_F: np.ndarray
    has_D: np.ndarray
    has_Q: np.ndarray
    sources: np.ndarray
    cell: Optional[np.ndarray] = None
    unused_cell: Optional[np.ndarray] = None
    S: Optional[np.ndarray] = None
    has_S: Optional[np.ndarray] = None
    weights: Optional[np.ndarray] = None
    config_type: Optional[np.ndarray] = None

    def __post_init__(self):
        for name in ("cell", "unused_cell", "S"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.zeros((len(self.Z), 3, 3)))
        if self.has_S is None:
            object.__setattr__(self, "has_S", np.zeros(len(self.Z), bool))
        if self.weights is None:
            object.__setattr__(self, "weights", np.ones((len(self.Z), len(WEIGHT_KEYS))))
        if self.config_type is None:
            object.__setattr__(self, "config_type", np.full(len(self.Z), DEFAULT_CONFIG_TYPE, dtype=object))

    @property
    def weighted(self) -> bool:
        """Whether some frame carries a loss weight other than 1 (the trainer then batches :attr:`term_weights`)."""
        return bool((self.weights != 1.0).any())

    @property
    def term_weights(self) -> np.ndarray:
        """(M, 4) float64: the weight of each frame's loss terms, columns (w_k, w_k·w_k,E, w_k·w_k,F, w_k·w_k,S):
        its dipole and total-charge terms, its energy (per molecule or per atom), forces and stress (virial)
        terms, with w_k the frame weight and w_k,E, w_k,F, w_k,S the per-term weights of :attr:`weights`."""
        return self.weights[:, :1] * np.concatenate([np.ones((len(self), 1)), self.weights[:, 1:]], axis=1)

    def trained_labels(self) -> "Dataset":
        """This dataset with the labels no loss term trains on marked absent: an energy, forces or stress whose term
        weight (:attr:`term_weights`) is 0, and the dipole of a frame of weight 0. What the label sanity checks
        judge when training: a frame given weight 0 because its labels are wrong is not reported again."""
        trained = self.term_weights > 0.0
        return dataclasses.replace(self, has_D=self.has_D & trained[:, 0], has_E=self.has_E & trained[:, 1],
                                   has_F=self.has_F & trained[:, 2], has_S=self.has_S & trained[:, 3])

    @property
    def periodic(self) -> np.ndarray:
        """(M,) bool: the frames with a periodic direction (a non-zero row of :attr:`cell`)."""
        return self.cell.any(axis=(1, 2))

    def __len__(self) -> int:
        return self.Z.shape[0]

    @property
    def max_atoms(self) -> int:
        return self.Z.shape[1]

    def centroids(self, frames) -> np.ndarray:
        """(len(frames), 3) Å, float64: the mean position of the real atoms of each of ``frames``.

        The trainer and ``eval`` move each molecule there before the cast to the compute dtype, as ``predict``
        does: float32 coordinates 1000 Å from the origin would cost ~3 meV/Å in forces. A dipole about the
        centroid c is the dipole about the origin minus Q·c.
        """
        frames = np.asarray(frames, np.int64)
        real = np.arange(self.max_atoms)[None, :] < self.N[frames][:, None]
        return (self.R[frames] * real[..., None]).sum(axis=1) / np.maximum(self.N[frames], 1)[:, None]

    def subset(self, indices) -> "Dataset":
        """The frames ``indices`` (any NumPy index) as a new dataset."""
        return Dataset(**{f.name: getattr(self, f.name)[indices] for f in dataclasses.fields(self)})

    def summary(self) -> str:
        labels = ",".join(k for k in LABELS if getattr(self, f"has_{k}").any())
        elements = sorted(set(np.unique(self.Z).tolist()) - {0})
        text = f"{len(self)} frames, up to {self.max_atoms} atoms, elements {elements}, labels {labels}"
        if self.weighted:
            weighted = int((self.weights != 1.0).any(axis=1).sum())
            unused = int((self.term_weights == 0.0).all(axis=1).sum())
            text += (f", per-frame loss weights (config_*weight) other than 1 on {weighted} frame(s), {unused} of "
                     "them of weight 0 in every term")
        return text


def concatenate(datasets: Sequence[Dataset]) -> Dataset:
    """Join datasets, padding all to the largest atom count."""
    if not datasets:
        raise ValueError("concatenate needs at least one dataset")
    n = max(d.max_atoms for d in datasets)

    def pad(a):
        """Zero-pad the atom axis (1) of ``a`` to n."""
        return np.pad(a, [(0, 0), (0, n - a.shape[1])] + [(0, 0)] * (a.ndim - 2))

    fields = {}
    for f in dataclasses.fields(Dataset):
        parts = [getattr(d, f.name) for d in datasets]
        if f.name in ("Z", "R", "F"):
            parts = [pad(p) for p in parts]
        fields[f.name] = np.concatenate(parts)
    return Dataset(**fields)


def unit_factors(energy_unit: str, force_unit: Optional[str], dipole_unit: str) -> tuple[float, float, float]:
    """(energy, force, dipole) factors to eV, eV/Å, e·Å; ``force_unit`` like 'kcal/mol/A' (None → energy_unit/Å)."""
    e = energy_factor(energy_unit)
    if force_unit is None:
        f = force_factor(energy_unit, "A")
    else:
        if "/" not in force_unit:
            raise ValueError(f"force unit must look like ENERGY/LENGTH (e.g. 'kcal/mol/A'), received {force_unit!r}")
        f_energy, f_length = force_unit.rsplit("/", 1)
        try:
            energy_factor(force_unit)
        except ValueError:
            pass
        else:  # kcal/mol: an energy unit, its "/mol" taken for the length
            raise ValueError(f"force unit {force_unit!r} is an energy unit; give ENERGY/LENGTH, e.g. "
                             f"'{force_unit}/A' or '{force_unit}/bohr'")
        f = force_factor(f_energy, f_length)
    return e, f, dipole_factor(dipole_unit)


def check_reading_options(energy_unit: str, force_unit: Optional[str], dipole_unit: str, force_sign: int,
                          keys: Optional[Sequence[str]], name=str) -> None:
    """Check how data files are to be read (the trainer's and the learning loop's settings of these names) before
    anything is read: known units, a force sign of ±1, well-formed ``KEY=NAME`` entries
    (:func:`physnetjax.data.key_mapping.parse_key_mapping`).

    Raises:
      ValueError: naming the setting as ``name(setting)`` does (a command line's option).
    """
    from physnetjax.data.key_mapping import parse_key_mapping

    try:
        unit_factors(energy_unit, force_unit, dipole_unit)
    except ValueError as error:
        raise ValueError(f"{name('energy_unit')}/{name('force_unit')}/{name('dipole_unit')}: {error}") from None
    if force_sign not in (1, -1):
        raise ValueError(f"{name('force_sign')} must be 1 (F = -dE/dR) or -1 (the file stores +dE/dR), "
                         f"received {force_sign}")
    try:
        parse_key_mapping(keys)
    except ValueError as error:
        raise ValueError(f"{name('keys')}: {error}") from None


def load_npz(path, *, energy_unit: str = "eV", force_unit: Optional[str] = None, dipole_unit: str = "eA",
             keys: Optional[Mapping[str, str]] = None) -> Dataset:
    """Read a PhysNet-style ``.npz`` (keys R, Z, N, E, F, optional D, Q) and validate it.

    ``keys`` maps PhysNet keys to the file's own names (``{"Z": "z"}`` for sGDML's MD17 files:
    :mod:`physnetjax.data.key_mapping`); a PhysNet key the file also holds under its own name is then not read
    (a warning says so).

    Shapes: R (M, n, 3) Å; Z (M, n) or (n,) ints, 0 = padding; N (M,) (optional: taken
    from the non-zero Z when absent); E (M,) or (M, 1); F (M, n, 3); D (M, 3); Q (M,)
    or (M, 1); S (M, 3, 3) or (M, 6) in Voigt order xx, yy, zz, yz, xz, xy, the stress of periodic frames in eV/Å³
    with ASE's sign (positive under tension; VASP's and most codes' "pressure" tensor is its negative, and kbar
    or GPa must be converted: 1 GPa = 1/160.2177 eV/Å³); per-frame loss weights ``config_weight``,
    ``config_energy_weight``, ``config_forces_weight``, ``config_stress_weight`` (or ``config_virial_weight``), each
    (M,), finite and ≥ 0 (:data:`WEIGHT_KEYS`, :attr:`Dataset.weights`). At least one of E and F is required. Positions must be in Å; energies,
    forces and dipoles are converted from the given units. Other keys named like labels
    (``forces``, ``energy``, ``gradients``, ...) are not read; a :class:`PhysNetInputWarning` names them.
    A periodic cell (key ``cell``, ``lattice`` or ``box``, optional ``pbc``: :func:`npz_cell`) is kept in
    :attr:`Dataset.cell`, as :func:`load_ase` keeps an extxyz cell (and a full cell under ``pbc`` all False in
    :attr:`Dataset.unused_cell`). Atomic charges ``Qa`` (M, n) in e (as
    :mod:`physnetjax.data.generate` writes them) give the total charge of a file without ``Q``, as the
    calculator's atomic charges do in :func:`load_ase`, and must sum to ``Q`` where both are given.

    Raises:
      DataError: missing keys, shape mismatches, NaN/Inf, atomic numbers outside
        [0, 118], N inconsistent with the zero padding of Z, a bad cell or pbc, ``Q`` and ``Qa`` that disagree,
        a negative, NaN or non-numeric loss weight, stress and virial weights that differ — naming file, key, frame.
    """
    path = Path(path)
    e_fac, f_fac, d_fac = unit_factors(energy_unit, force_unit, dipole_unit)
    try:
        raw = read_npz(path)
    except NpzReadError as err:
        raise DataError(f"{path}: cannot read as .npz: {err}") from err
    mapping = dict(keys or {})
    missing = [(ours, theirs) for ours, theirs in mapping.items() if theirs not in raw]
    if missing:
        raise DataError(f"{path}: key mapping {' '.join(f'{ours}={theirs}' for ours, theirs in missing)}: the file "
                        f"has no key {', '.join(repr(theirs) for _, theirs in missing)} (keys present: {sorted(raw)})")
    raw, replaced = renamed_npz_keys(raw, mapping)
    if replaced:
        warn_caller(f"{path}: its own key(s) {', '.join(replaced)} are not read: the key mapping "
                    f"{mapping_text(mapping)} reads other keys in their place", PhysNetInputWarning)
    for key in ("R", "Z"):
        if key not in raw:
            raise DataError(f"{path}: missing required key {key!r} (keys present: {sorted(raw)}); if the file holds "
                            f"it under another name: {label_remedies().renamed_labels}")
    read = ("R", "Z", "N", *LABELS, *WEIGHT_KEYS, VIRIAL_WEIGHT_KEY, CONFIG_TYPE_KEY)
    unread = [key for key in raw if key not in read and (label_like(key) or _varying_weight(key, raw[key]))]
    if "E" not in raw and "F" not in raw:
        raise DataError(f"{path}: no labels: needs key 'E' and/or 'F' (keys present: {sorted(raw)})"
                        + (f"; label-like keys found but not read: {', '.join(map(repr, unread))}: to read the "
                           "reference labels as the PhysNet keys E (energy) and F (forces, -dE/dR), "
                           f"{label_remedies().renamed_labels}" if unread else ""))
    if unread:
        warn_caller(f"{path}: label-like keys not read: {', '.join(map(repr, unread))}; the labels read are the "
                    "PhysNet keys E (energy), F (forces, -dE/dR), D (dipole), Q (total charge): to read the labels "
                    f"meant as these, {label_remedies().renamed_labels} ({label_remedies().gradients_as_forces})",
                    PhysNetInputWarning)
    R = _real_numbers(path, "R", raw["R"]).astype(np.float64)
    if R.ndim != 3 or R.shape[2] != 3:
        raise DataError(f"{path}: key 'R' must have shape (frames, atoms, 3), received {R.shape}")
    M, n = R.shape[:2]
    if M == 0 or n == 0:
        raise DataError(f"{path}: key 'R' has shape {R.shape}: the file holds no frames or no atoms")
    Z = _real_numbers(path, "Z", raw["Z"], kind="atomic numbers")
    if Z.shape == (n,):
        Z = np.broadcast_to(Z, (M, n))
    _check_shape(path, "Z", Z, (M, n))
    if not np.issubdtype(Z.dtype, np.integer):
        if not np.all(np.isfinite(Z)) or np.any(np.mod(Z, 1) != 0):
            frame = int(np.nonzero(~(np.isfinite(Z) & (np.mod(Z, 1) == 0)).all(axis=1))[0][0])
            raise DataError(f"{path}: key 'Z' frame {frame}: atomic numbers must be integers, received {Z[frame]}")
    check_atomic_number_range(path, Z)  # before the int32 cast, which wraps 2**32 + 6 to 6
    Z = Z.astype(np.int32)
    labels = {}
    scale = {"E": e_fac, "F": f_fac, "D": d_fac, "Q": 1.0, "S": 1.0}
    shapes = {"E": (M,), "F": (M, n, 3), "D": (M, 3), "Q": (M,), "S": (M, 3, 3)}
    for key in LABELS:
        if key not in raw:
            continue
        value = _real_numbers(path, key, raw[key]).astype(np.float64)
        if key in ("E", "Q") and value.shape == (M, 1):
            value = value[:, 0]
        if key == "S" and value.shape == (M, 6):
            value = voigt_to_tensor(value)
        _check_shape(path, key, value, shapes[key])
        labels[key] = value * scale[key]
    if "E" in raw and np.asarray(raw["E"]).dtype == np.float32 and labels["E"].size:
        largest = float(np.abs(np.asarray(raw["E"])).max())
        step = float(np.spacing(np.float32(largest))) * e_fac
        if step > FLOAT32_ENERGY_RESOLUTION:
            warn_caller(f"{path}: key 'E' is float32: at |E| up to {largest:.6g} (file units) its values lie "
                        f"{step:.2g} eV apart, so each energy was rounded by up to {step / 2:.2g} eV when the file "
                        "was written; store energies as float64", PhysNetInputWarning)
    if "N" in raw:
        N = _real_numbers(path, "N", raw["N"], kind="atom counts")
        if N.shape == (M, 1):
            N = N[:, 0]
        _check_shape(path, "N", N, (M,))
        N = N.astype(np.int32)
    else:
        N = np.count_nonzero(Z, axis=1).astype(np.int32)
    if "Qa" in raw:
        labels["Q"] = _total_charge_of_atomic_charges(path, raw["Qa"], labels.get("Q"), N, (M, n))
    given = {}
    for key in (*WEIGHT_KEYS, VIRIAL_WEIGHT_KEY):
        if key in raw:
            given[key] = _real_numbers(path, key, raw[key], kind="loss weights").astype(np.float64)
            _check_shape(path, key, given[key], (M,))
    weights = frame_weights(path, given, {key: np.ones(M, bool) for key in given}, M)
    sources = np.array([f"{path}[{k}]" for k in range(M)])
    full = {k: labels.get(k, np.zeros(shapes[k])) for k in LABELS}
    has = {f"has_{k}": np.full(M, k in labels) for k in LABELS}
    written, pbc = npz_written_cell(path, raw, M)
    data = Dataset(Z=Z, R=R, N=N, sources=sources, cell=periodic_cells(path, pbc, written),
                   unused_cell=unused_cell(pbc, written), weights=weights, config_type=_npz_config_types(path, raw, M),
                   **full, **has)
    validate(data, path)
    return data


def _npz_config_types(path, raw: dict, frames: int) -> Optional[np.ndarray]:
    """(frames,) str: the ``.npz`` key :data:`CONFIG_TYPE_KEY` (one non-empty text per frame), or None when absent.

    Raises:
      DataError: the key is not text or not of shape (frames,), or a frame's kind is empty.
    """
    if CONFIG_TYPE_KEY not in raw:
        return None
    kinds = np.asarray(raw[CONFIG_TYPE_KEY])
    if kinds.dtype.kind != "U":
        raise DataError(f"{path}: key {CONFIG_TYPE_KEY!r} must hold text (each frame's kind, e.g. 'bulk'), "
                        f"received {kinds.dtype} values")
    _check_shape(path, CONFIG_TYPE_KEY, kinds, (frames,))
    return np.array([_config_type(path, k, kind) for k, kind in enumerate(kinds.tolist())], dtype=object)


def _config_type(path, k: int, value) -> str:
    """Frame ``k``'s kind: a non-empty text or a whole number (an extxyz ``config_type=1`` is read as an int), as
    text.

    Raises:
      DataError: naming the file, the frame and the value.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (str, int, np.integer)) or str(value).strip() == "":
        raise DataError(f"{path}: frame {k}: {CONFIG_TYPE_KEY} must be a name (e.g. 'bulk'), received {value!r}")
    return str(value).strip()


def _total_charge_of_atomic_charges(path, atomic_charges, total_charges, atom_counts, shape) -> np.ndarray:
    """(M,) total charges in e: ``total_charges`` (key ``Q``) checked against the sums of the real atoms' atomic
    charges (key ``Qa``) within 1e-3 e, or those sums when ``total_charges`` is None. DataError on a mismatch."""
    charges = _real_numbers(path, "Qa", atomic_charges).astype(np.float64)
    _check_shape(path, "Qa", charges, shape)
    real = np.arange(shape[1])[None, :] < np.asarray(atom_counts)[:, None]
    sums = np.where(real, charges, 0.0).sum(axis=1)
    if total_charges is None:
        return sums
    differing = np.flatnonzero(np.abs(sums - total_charges) > 1e-3)
    if differing.size:
        k = int(differing[0])
        raise DataError(f"{path}: key 'Q' (total charge) differs from the sum of the atomic charges 'Qa' in "
                        f"{differing.size} frame(s) (e.g. frame {k}: Q = {total_charges[k]:g} e, ΣQa = {sums[k]:.6g} "
                        "e): the model takes the total charge as an input; keep the right one")
    return total_charges


def load_ase(path, *, index=":", energy_unit: str = "eV", force_unit: Optional[str] = None,
             dipole_unit: str = "eA", keys: Optional[Mapping[str, str]] = None) -> Dataset:
    """Read any ASE-readable file (extxyz, .traj, ASE .db, ...) and validate it.

    ``keys`` maps labels (E, F, D, Q, S) to names the frames hold them under instead, each looked up among the
    calculator results, ``atoms.info`` and ``atoms.arrays`` (``{"E": "REF_energy", "F": "REF_forces"}`` for an
    extxyz written for MACE: :mod:`physnetjax.data.key_mapping`); a mapped label replaces the one read by default.

    Energies, forces and dipoles come from each frame's calculator results (as
    ``ase.io`` stores them: an extxyz ``energy=`` entry and ``forces`` column); a
    frame without one of them has that label masked. The total charge is
    ``atoms.info['charge']`` if present, else the sum of the initial charges when
    set, else the sum of the calculator's atomic ``charges`` (an extxyz ``charge``
    column), else unknown (0, masked). The stress is the calculator's ``stress`` (an extxyz
    ``stress=`` entry, 3×3 or Voigt, eV/Å³, ASE's sign) of frames periodic along x, y and z. The per-frame loss
    weights are the ``atoms.info`` entries of :data:`WEIGHT_KEYS` (extxyz ``config_weight=0.0``; MACE's
    ``config_virial_weight`` is read as the stress weight), 1 where absent. Positions must be in Å.
    The cell vectors along the periodic directions (``pbc``) are kept in :attr:`Dataset.cell`. A frame with a full
    cell but pbc all False is read as isolated and keeps that cell in :attr:`Dataset.unused_cell`, so that
    :func:`warn_unused_cells` can warn when its atoms would meet their images in it (a bulk frame whose pbc was
    cleared).

    Other label-like entries (``atoms.info`` or per-atom arrays whose names hold
    energy, force, dipole, charge or stress, e.g. ``REF_energy``, ``REF_forces``,
    ``total_charge``, a calculator result such as extxyz ``free_energy=`` in a frame
    without ``energy=``, and virial labels) are not
    read; a :class:`PhysNetInputWarning` names them, since the labels trained on may then
    not be the ones meant (rename the wanted key to ``energy``/``forces``/``charge``). Other entries whose names
    end in ``weight`` are not read either; the warning names those whose value varies between frames (a per-frame
    weight under another name).

    Raises:
      DataError: unreadable file, no frames, no energy or force label anywhere,
        NaN/Inf, bad atomic numbers, a periodic direction without a cell vector, or an
        ``atoms.info['energy']``/``['dipole']``/``['charge']`` or ``atoms.arrays['forces']``
        that differs from the calculator's value (for the charge: the sum of its atomic
        ``charges``), a loss weight that is no number ≥ 0 or stress and virial weights that differ — naming file,
        key and frame.
    """
    import ase.io

    from physnetjax.structure_file import read_failure

    path = Path(path)
    e_fac, f_fac, d_fac = unit_factors(energy_unit, force_unit, dipole_unit)
    mapping = dict(keys or {})
    outside = [f"{ours}={theirs}" for ours, theirs in mapping.items() if ours not in ASE_KEYS]
    if outside:
        raise DataError(f"{path}: key mapping {' '.join(outside)}: a file read by ASE gives its atoms' own positions, "
                        f"atomic numbers and counts; only its labels {', '.join(ASE_KEYS)} can be mapped")
    try:
        frames = ase.io.read(path, index=index)
    except Exception as err:
        raise DataError(f"{path}: {read_failure(err, path)}") from err
    if not isinstance(frames, list):
        frames = [frames]
    if not frames:
        raise DataError(f"{path}: contains no frames")
    M = len(frames)
    n = max(len(a) for a in frames)
    Z = np.zeros((M, n), np.int32)
    R = np.zeros((M, n, 3))
    N = np.zeros(M, np.int32)
    E, F, D, Q, S = np.zeros(M), np.zeros((M, n, 3)), np.zeros((M, 3)), np.zeros(M), np.zeros((M, 3, 3))
    has = {k: np.zeros(M, bool) for k in LABELS}
    cell, written_cell, written_pbc = np.zeros((M, 3, 3)), np.zeros((M, 3, 3)), np.zeros((M, 3), bool)
    unread: dict[str, list[int]] = {}
    other_weights: dict[str, dict[int, str]] = {}
    weight_keys = (*WEIGHT_KEYS, VIRIAL_WEIGHT_KEY)
    weight_values = {key: np.ones(M) for key in weight_keys}
    weight_given = {key: np.zeros(M, bool) for key in weight_keys}
    kinds = np.full(M, DEFAULT_CONFIG_TYPE, dtype=object)
    for k, atoms in enumerate(frames):
        m = len(atoms)
        cell[k] = periodic_cell(path, k, atoms.pbc, atoms.cell)
        written_cell[k], written_pbc[k] = atoms.cell.array, atoms.pbc
        N[k] = m
        Z[k, :m] = atoms.get_atomic_numbers()
        R[k, :m] = atoms.get_positions()
        results = atoms.calc.results if atoms.calc is not None else {}
        _check_label_keys(path, k, atoms, results, unread, other_weights, set(mapping.values()))
        for key in weight_keys:
            if key in atoms.info:
                weight_values[key][k], weight_given[key][k] = _info_weight(path, k, key, atoms.info[key]), True
        if CONFIG_TYPE_KEY in atoms.info:
            kinds[k] = _config_type(path, k, atoms.info[CONFIG_TYPE_KEY])
        read_as = {ours: mapping.get(ours, default) for ours, default in RESULT_OF_LABEL.items()}
        value = {ours: frame_value(atoms, results, read_as[ours]) if ours in mapping else results.get(read_as[ours])
                 for ours in read_as}
        if value["E"] is not None:
            E[k], has["E"][k] = _frame_label(path, k, read_as["E"], value["E"], ()) * e_fac, True
        if value["F"] is not None:
            F[k, :m], has["F"][k] = _frame_label(path, k, read_as["F"], value["F"], (m, 3)) * f_fac, True
        if value["D"] is not None:
            D[k], has["D"][k] = _frame_label(path, k, read_as["D"], value["D"], (3,)) * d_fac, True
        if value["S"] is not None:
            S[k], has["S"][k] = _stress_label(path, k, value["S"]), True
        if "Q" in mapping:
            charge = frame_value(atoms, results, mapping["Q"])
            if charge is not None:
                Q[k], has["Q"][k] = _info_charge(path, k, charge, mapping["Q"]), True
        elif "charge" in atoms.info:
            Q[k], has["Q"][k] = _info_charge(path, k, atoms.info["charge"]), True
        elif atoms.has("initial_charges"):
            Q[k], has["Q"][k] = float(atoms.get_initial_charges().sum()), True
        elif "charges" in results:
            Q[k], has["Q"][k] = float(np.sum(_frame_label(path, k, "charges", results["charges"], (m,)))), True
    absent = [f"{ours}={theirs}" for ours, theirs in mapping.items() if not has[ours].any()]
    if absent:
        raise DataError(f"{path}: key mapping {' '.join(absent)}: no frame holds it (names held: {frame_names(frames)})")
    for name, values in other_weights.items():
        if len(values) < M or len(set(values.values())) > 1:
            unread[name] = sorted(values)
    unread_note = "; ".join(f"{key!r} (frames {_first_frames(np.isin(np.arange(M), frames))})"
                            for key, frames in unread.items())
    if not (has["E"].any() or has["F"].any()):
        raise DataError(f"{path}: no frame carries an energy or forces (calculator results 'energy'/'forces')"
                        + (f"; label-like keys found but not read: {unread_note} — to read the reference labels "
                           f"as the PhysNet keys E and F, {label_remedies().renamed_labels} (to 'energy' and "
                           "'forces'; a virial W is not read: give the stress σ = -W / V)"
                           if unread else ""))
    if unread:
        warn_caller(f"{path}: label-like keys not read: {unread_note}; the labels read are the calculator "
                    "results 'energy', 'forces', 'dipole' (an extxyz energy= entry, forces column) and the total "
                    "charge info['charge'] (else the sum of 'initial_charges', else of the atomic 'charges'), the "
                    "per-frame loss weights info config_weight and config_{energy,forces,stress,virial}_weight, and "
                    "the result 'stress' (an extxyz stress= entry, eV/Å³; a virial W is not read: give the stress "
                    f"σ = -W / V); to read the labels meant as these, {label_remedies().renamed_labels}",
                    PhysNetInputWarning)
    weights = frame_weights(path, {key: weight_values[key] for key in weight_keys if weight_given[key].any()},
                            weight_given, M)
    sources = np.array([f"{path}[{k}]" for k in range(M)])
    data = Dataset(Z=Z, R=R, N=N, E=E, F=F, D=D, Q=Q, S=S, sources=sources, cell=cell,
                   unused_cell=unused_cell(written_pbc, written_cell), weights=weights, config_type=kinds,
                   **{f"has_{k}": v for k, v in has.items()})
    validate(data, path)
    return data


def _frame_label(path, k: int, key: str, value, shape: tuple) -> np.ndarray:
    """The calculator result ``key`` of frame ``k`` as float64 of ``shape`` (``()`` for the energy).

    Raises:
      DataError: naming the file, the frame and the value: text (an extxyz ``energy=abc``), a flag, complex numbers,
        or another shape.
    """
    array = np.asarray(value)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        expected = "a number" if shape == () else f"numbers of shape {shape}"
        raise DataError(f"{path}: key {key!r} frame {k}: must be {expected}, received {value!r}")
    if array.shape != shape:
        raise DataError(f"{path}: key {key!r} frame {k}: expected shape {shape}, received {array.shape}")
    return array.astype(np.float64)


def _stress_label(path, k: int, value) -> np.ndarray:
    """(3, 3) eV/Å³: the calculator's stress of frame ``k``, a 3×3 tensor or a Voigt 6-vector (xx, yy, zz, yz, xz, xy;
    ASE writes extxyz ``stress=`` either way). DataError as :func:`_frame_label`."""
    if np.shape(value) == (6,):
        return voigt_to_tensor(_frame_label(path, k, "stress", value, (6,)))
    return _frame_label(path, k, "stress", value, (3, 3))


def _info_weight(path, k: int, key: str, value) -> float:
    """The loss weight of the ``atoms.info`` entry ``key`` of frame ``k``: one real number, not text (an extxyz
    ``config_weight=abc``), a flag (``config_weight=T``) or several numbers; :func:`frame_weights` checks its range.

    Raises:
      DataError: naming the file, the frame, the key and the value.
    """
    array = np.asarray(value)
    if array.dtype == bool or array.ndim != 0 or not (np.issubdtype(array.dtype, np.integer)
                                                       or np.issubdtype(array.dtype, np.floating)):
        raise DataError(f"{path}: frame {k}: info {key!r} must be one number, a loss weight >= 0, received {value!r}")
    return float(array)


def frame_weights(path, values: dict, given: dict, frames: int) -> np.ndarray:
    """(frames, 4) float64 :attr:`Dataset.weights` from the loss weights read from ``path``.

    Args:
      path: the file, for messages.
      values: {key of :data:`WEIGHT_KEYS` or :data:`VIRIAL_WEIGHT_KEY`: (frames,) float64} of the keys the file
        holds.
      given: {key: (frames,) bool}, the frames that give ``key`` (the others take 1).
      frames: the file's frame count M.

    Raises:
      DataError: a weight that is NaN, infinite or negative, or a frame giving ``config_stress_weight`` and
        ``config_virial_weight`` of different values — naming file, key and frame(s).
    """
    for key, value in values.items():
        bad = given[key] & ~(np.isfinite(value) & (value >= 0))
        if bad.any():
            k = int(np.argmax(bad))
            raise DataError(f"{path}: key {key!r} frame(s) {_first_frames(bad)}: a loss weight must be a finite "
                            f"number >= 0, received {value[k]:g} in frame {k}")
    stress = WEIGHT_KEYS[3]
    weights = np.ones((frames, len(WEIGHT_KEYS)))
    for column, key in enumerate(WEIGHT_KEYS):
        if key in values:
            weights[:, column] = np.where(given[key], values[key], 1.0)
    if VIRIAL_WEIGHT_KEY in values:
        virial, given_virial = values[VIRIAL_WEIGHT_KEY], given[VIRIAL_WEIGHT_KEY]
        if stress in values:
            both = given_virial & given[stress] & (virial != values[stress])
            if both.any():
                k = int(np.argmax(both))
                raise DataError(f"{path}: frame(s) {_first_frames(both)} give both {stress!r} and "
                                f"{VIRIAL_WEIGHT_KEY!r} (MACE's name for the same weight) with different values "
                                f"({values[stress][k]:g} and {virial[k]:g} in frame {k}): keep one of them")
        weights[:, 3] = np.where(given_virial, virial, weights[:, 3])
    return weights


def _varying_weight(name: str, value) -> bool:
    """Whether the ``.npz`` key ``name`` ends in "weight", is none of :data:`WEIGHT_KEYS`, and varies along its
    first axis (between frames): a per-frame weight under a name that is not read."""
    array = np.asarray(value)
    return (name.lower().endswith("weight") and array.ndim >= 1 and len(array) > 1
            and not (array == array[:1]).all())


def _info_charge(path, k: int, value, name: str = "charge") -> float:
    """The total charge (e) of an extxyz ``charge=`` entry of frame ``k``: one finite number, not a flag (``charge=T``
    read as +1 e) or several numbers.

    Raises:
      DataError: naming the file, the frame and the value.
    """
    array = np.asarray(value)
    if array.dtype == bool or array.ndim != 0 or not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{path}: frame {k}: info {name!r} must be one number, the total charge in e, received "
                        f"{value!r}")
    return float(array)


def periodic_cell(path, k: int, pbc, cell) -> np.ndarray:
    """(3, 3) Å: the cell vectors (rows of ``cell``, Å) of frame ``k`` along its periodic directions (``pbc``,
    3 bools), zero rows elsewhere.

    Raises:
      DataError: the vectors along the periodic directions span no volume (naming ``path`` and the frame).
    """
    pbc = np.asarray(pbc, dtype=bool)
    cell = np.where(pbc[:, None], np.asarray(cell, dtype=np.float64), 0.0)
    periodic = np.nonzero(pbc)[0]
    if periodic.size and np.linalg.matrix_rank(cell[periodic], tol=1e-6) < periodic.size:
        raise DataError(f"{path}: frame {k}: pbc {_pbc_text(pbc)} but the cell {cell.tolist()} Å spans no "
                        "volume along the periodic directions; give the cell, or set pbc=False for a molecule")
    return cell


def voigt_to_tensor(voigt) -> np.ndarray:
    """(..., 3, 3) symmetric tensors from (..., 6) Voigt vectors in ASE's order xx, yy, zz, yz, xz, xy."""
    voigt = np.asarray(voigt, dtype=np.float64)
    xx, yy, zz, yz, xz, xy = np.moveaxis(voigt, -1, 0)
    rows = [np.stack([xx, xy, xz], -1), np.stack([xy, yy, yz], -1), np.stack([xz, yz, zz], -1)]
    return np.stack(rows, -2)


def unused_cell(pbc, cell) -> np.ndarray:
    """(..., 3, 3) Å: the cells ``cell`` (rows: cell vectors, Å) of the frames whose ``pbc`` (..., 3 bools) is all False
    and whose cell spans a volume, zero for the others (:attr:`Dataset.unused_cell`)."""
    pbc, cell = np.asarray(pbc, dtype=bool), np.asarray(cell, dtype=np.float64)
    full = ~pbc.any(axis=-1) & (np.abs(np.linalg.det(cell)) > 1e-6)
    return np.where(full[..., None, None], cell, 0.0)


CELL_KEYS = ("cell", "lattice", "box")
"""Names (in any case) of the ``.npz`` key that holds the periodic cell, read by :func:`npz_cell`."""


def npz_cell(path, raw: dict, frames: int) -> np.ndarray:
    """(frames, 3, 3) Å: the periodic cell of each frame of the ``.npz`` arrays ``raw`` (read from ``path``).

    The cell key (one of :data:`CELL_KEYS`, in any case) holds the cell vectors as rows, in Å: shape (3, 3) for
    every frame or (frames, 3, 3). The optional key ``pbc`` (in any case) says which directions are periodic:
    (3,) or (frames, 3) booleans (or 0/1), all True by default. The result has zero rows along the directions
    that are not periodic (:func:`periodic_cell`), and is all zero without a cell key (isolated molecules).

    Raises:
      DataError: several cell keys, a cell or pbc of another shape, a cell with NaN or Inf, pbc values other than
        True/False, pbc marking periodic directions without a cell key, or periodic cell vectors that span no
        volume — naming the file, the key, its shape or the frame.
    """
    cell, pbc = npz_written_cell(path, raw, frames)
    return periodic_cells(path, pbc, cell)


def periodic_cells(path, pbc, cells) -> np.ndarray:
    """:func:`periodic_cell` of every frame: (frames, 3, 3) Å from ``pbc`` (frames, 3) and ``cells`` (frames, 3, 3)."""
    return np.stack([periodic_cell(path, k, pbc[k], cells[k]) for k in range(len(cells))])


def npz_written_cell(path, raw: dict, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """((frames, 3, 3) Å, (frames, 3) bool): the cell of each frame of the ``.npz`` arrays ``raw`` as written, all
    directions included, and its pbc (all True without a ``pbc`` key); zero and all False without a cell key.
    :func:`npz_cell` keeps the periodic rows.

    Raises:
      DataError: as :func:`npz_cell`, but for cell vectors that span no volume.
    """
    cell_keys = [key for key in raw if key.lower() in CELL_KEYS]
    pbc_keys = [key for key in raw if key.lower() == "pbc"]
    if len(cell_keys) > 1 or len(pbc_keys) > 1:
        raise DataError(f"{path}: several cell or pbc keys {cell_keys + pbc_keys}: keep one of each")
    pbc = np.ones((frames, 3), bool)
    if pbc_keys:
        key = pbc_keys[0]
        value = np.asarray(raw[key])
        if value.shape not in ((3,), (frames, 3)):
            raise DataError(f"{path}: key {key!r} has shape {value.shape}, expected (3,) or ({frames}, 3)")
        if value.dtype != bool and not (np.issubdtype(value.dtype, np.number) and np.isin(value, (0, 1)).all()):
            raise DataError(f"{path}: key {key!r} must hold True/False (or 1/0) per direction, received "
                            f"{value.reshape(-1)[:6].tolist()}")
        pbc = np.broadcast_to(value.astype(bool), (frames, 3))
    if not cell_keys:
        if pbc_keys and pbc.any():
            raise DataError(f"{path}: key {pbc_keys[0]!r} marks periodic directions but the file holds no cell "
                            f"(a key {' or '.join(map(repr, CELL_KEYS))} of shape (3, 3) or ({frames}, 3, 3), Å)")
        return np.zeros((frames, 3, 3)), np.zeros((frames, 3), bool)
    key = cell_keys[0]
    value = np.asarray(raw[key])
    if value.shape not in ((3, 3), (frames, 3, 3)) or not np.issubdtype(value.dtype, np.number):
        raise DataError(f"{path}: key {key!r} has shape {value.shape} ({value.dtype}), expected numbers of shape "
                        f"(3, 3) or ({frames}, 3, 3): the cell vectors as rows, in Å")
    value = np.broadcast_to(value.astype(np.float64), (frames, 3, 3))
    bad = ~np.isfinite(value).all(axis=(1, 2))
    if bad.any():
        raise DataError(f"{path}: key {key!r} has NaN or Inf in frame(s) {_first_frames(bad)}")
    return value, pbc


def _pbc_text(pbc) -> str:
    return " ".join("T" if p else "F" for p in pbc)


def warn_unused_cells(data: Dataset, reach: float, reach_text: str) -> None:
    """Warn (:class:`PhysNetInputWarning`) about frames written with a full cell but pbc all False whose atoms would
    lie within ``reach`` Å of their own periodic images were the cell periodic (:attr:`Dataset.unused_cell`).

    Such a frame is read as an isolated cluster, though its labels, if they come from a periodic calculation (a
    crystal, a liquid), hold the images' interactions: a model trained on it fits forces it cannot see (a probe's
    force MAE: 0.235 against 0.077 eV/Å with the pbc set). The warning stays silent for a cluster or molecule whose
    box keeps the images beyond ``reach``.

    Args:
      data: the frames (their :attr:`Dataset.unused_cell`).
      reach: Å, how far the model sees (message passing and pair terms).
      reach_text: how the message names the reach, e.g. ``"the model's cutoff 5 Å"``.
    """
    positions = [data.R[k, : data.N[k]] for k in range(len(data))]
    nearest = nearest_images(data.unused_cell, positions, reach)
    near = np.isfinite(nearest)
    if near.any():
        k = int(np.argmax(near))
        warn_caller(
            f"{int(near.sum())} frame(s) carry a cell but pbc F F F, and their atoms would lie within {reach_text} of "
            f"their own periodic images were the cell periodic (frames {_first_frames(near)}; e.g. {data.sources[k]}, "
            f"cell {data.unused_cell[k].tolist()} Å: closest image at {nearest[k]:.3g} Å): they are read as isolated "
            "clusters. If their labels come from a periodic calculation (a crystal, a liquid), these frames are not "
            "isolated and the model would fit image interactions it cannot see: set pbc True in the file (extxyz "
            "pbc=\"T T T\", .npz key pbc) to train and evaluate them as periodic cells",
            PhysNetInputWarning)


def check_images_beyond_reach(sources: Sequence[str], cells: Sequence[np.ndarray],
                              positions: Sequence[np.ndarray], reach: float, reach_text: str, remedy: str) -> None:
    """Refuse frames in which an atom lies within ``reach`` Å of a periodic image of an atom, for a tool that takes
    every structure as an isolated molecule (``check``): their labels hold the images' interactions, which it would
    leave out. A molecule in a vacuum box whose images all lie beyond ``reach`` passes.

    Args:
      sources: each frame's name for messages, e.g. ``"file[frame]"``.
      cells: each frame's (3, 3) cell vectors as rows, Å, zero rows along the directions that are not periodic
        (all zero: an isolated molecule).
      positions: each frame's (n, 3) positions of its real atoms, Å.
      reach: Å, how far the model sees (message passing and pair terms).
      reach_text: how the message names the reach, e.g. ``"the model's cutoff 5 Å"``.
      remedy: the end of the message (why such frames are refused here, and what to do).

    Raises:
      DataError: naming the frames (their indices and the first's source), the pbc and cell, and the nearest image
        distance.
    """
    cells = np.asarray(cells, dtype=np.float64).reshape(-1, 3, 3)
    nearest = nearest_images(cells, positions, reach)
    bad = np.isfinite(nearest)
    if bad.any():
        k = int(np.argmin(nearest))
        pbc = cells[k].any(axis=1)
        raise DataError(
            f"{int(bad.sum())} periodic frame(s) have atoms within {reach_text} of a periodic image (frames "
            f"{_first_frames(bad)}; e.g. {sources[k]}, pbc {_pbc_text(pbc)}, cell {cells[k].tolist()} Å: "
            f"image at {nearest[k]:.3g} Å): {remedy}")


def nearest_images(cells: Sequence[np.ndarray], positions: Sequence[np.ndarray], reach: float) -> np.ndarray:
    """(frames,) Å: each frame's shortest distance from an atom to a periodic image of an atom, inf where none lies
    within ``reach`` Å (and for a frame without a cell).

    Args:
      cells: each frame's (3, 3) cell vectors as rows, Å, periodic along its non-zero rows.
      positions: each frame's (n, 3) positions of its real atoms, Å.
      reach: Å, how far to look.
    """
    from ase.neighborlist import primitive_neighbor_list

    cells = np.asarray(cells, dtype=np.float64).reshape(-1, 3, 3)
    nearest = np.full(len(cells), np.inf)
    for k in np.nonzero(cells.any(axis=(1, 2)))[0]:
        pbc = cells[k].any(axis=1)
        distances, shifts = primitive_neighbor_list("dS", pbc, cells[k], positions[k], reach, self_interaction=False)
        images = distances[shifts.any(axis=1)]
        if images.size:
            nearest[k] = images.min()
    return nearest


LABEL_WORDS = ("energ", "force", "grad", "dipole", "charge", "stress", "virial")
"""Substrings (lower case) of the names of labels the readers report when they do not read them (``energ``:
``energies`` too)."""

LABEL_NAMES = ("e", "etot", "e_tot", "u0", "f", "g", "d", "mu", "q")
"""Whole names (lower case) of labels the readers report when they do not read them: energies stored as ``e``,
``Etot``, ``U0`` (QM9), forces as ``f``, gradients as ``G``, dipoles as ``mu`` (the npz reader reads only the
PhysNet keys ``E``, ``F``, ``D``, ``Q``)."""


def label_like(name: str) -> bool:
    """Whether a key or column ``name`` looks like a label (:data:`LABEL_WORDS`, :data:`LABEL_NAMES`)."""
    lower = name.lower()
    return lower in LABEL_NAMES or any(word in lower for word in LABEL_WORDS)

READ_KEYS = {"charge", "initial_charges", "numbers", "positions", *WEIGHT_KEYS, VIRIAL_WEIGHT_KEY}
"""``atoms.info``/``atoms.arrays`` names that :func:`load_ase` reads itself."""

RESULT_OF_LABEL = {"E": "energy", "F": "forces", "D": "dipole", "S": "stress"}
"""Label → the calculator result :func:`load_ase` reads it from unless a key mapping names another (the total
charge Q, unless mapped, comes from ``info['charge']`` or the atoms' charges: see there)."""

RESULT_WORDS = {"energy": "energy", "force": "forces", "dipole": "dipole", "stress": "stress", "virial": None}
"""Substrings of calculator result names (e.g. ``free_energy``) reported as not read when the frame lacks the result
that is read for them (None: never read)."""

SAME_AS_RESULT = {"energy": "info", "dipole": "info", "forces": "arrays"}
"""Names that may duplicate a calculator result outside it (``.traj``/``.db`` keep ``info``): they must agree."""


def _check_label_keys(path, k: int, atoms, results: dict, unread: dict, other_weights: dict,
                      mapped: set = frozenset()) -> None:
    """Record in ``unread`` (name → frames) the label-like info/array keys of frame ``k`` that are not read, and in
    ``other_weights`` (name → {frame: value as text}) those ending in "weight" that are not read
    (:func:`load_ase` names the ones that vary between frames).

    A key named like a calculator result (:data:`SAME_AS_RESULT`) that is also in
    ``results`` must hold the same value, and ``info['charge']`` the sum of the atomic
    ``charges`` result (DataError otherwise: which one is meant?).
    """
    for name, value in [*atoms.info.items(), *atoms.arrays.items()]:
        if name in READ_KEYS or name in mapped:
            continue
        if name.lower().endswith("weight"):
            other_weights.setdefault(name, {})[k] = repr(np.asarray(value).tolist())
            continue
        if name in SAME_AS_RESULT and name in results:
            ours, theirs = np.asarray(results[name], np.float64), np.asarray(value, np.float64)
            if ours.shape != theirs.shape or not np.allclose(ours, theirs, rtol=1e-6, atol=1e-6):
                raise DataError(f"{path}: frame {k}: atoms.{SAME_AS_RESULT[name]}[{name!r}] differs from the "
                                f"calculator result {name!r} (e.g. {theirs.reshape(-1)[:3].tolist()} vs "
                                f"{ours.reshape(-1)[:3].tolist()}): keep one of them")
            continue
        if label_like(name):
            unread.setdefault(name, []).append(k)
    if "charge" in atoms.info and "charges" in results:
        total = float(np.sum(results["charges"]))
        if abs(total - float(atoms.info["charge"])) > 1e-3:
            raise DataError(f"{path}: frame {k}: atoms.info['charge'] = {float(atoms.info['charge']):g} differs from "
                            f"the sum {total:.6g} of the calculator's atomic 'charges': keep one of them")
    if "charge" in atoms.info and atoms.has("initial_charges") and np.any(atoms.get_initial_charges() != 0):
        total = float(np.sum(atoms.get_initial_charges()))
        if abs(total - float(atoms.info["charge"])) > 1e-3:
            raise DataError(f"{path}: frame {k}: atoms.info['charge'] = {float(atoms.info['charge']):g} differs from "
                            f"the sum {total:.6g} of the initial charges: keep one of them")
    for name in results:  # e.g. extxyz free_energy= (ASE makes it a result) in a frame without energy=
        if name not in SAME_AS_RESULT and name not in mapped and any(word in name.lower() and (read is None or read not in results)
                                              for word, read in RESULT_WORDS.items()):
            unread.setdefault(name, []).append(k)


def check_data_file(path) -> None:
    """Refuse a data file ``path`` that does not exist (:class:`DataFileNotFoundError`) or is a directory
    (:class:`DataError`), before anything reads it."""
    if not Path(path).exists():
        raise DataFileNotFoundError(f"{path}: no such file", path)
    if Path(path).is_dir():
        raise DataError(f"{path}: it is a directory, not a data file: give a file in it (.npz, or a structure file "
                        "ASE reads such as .extxyz)")


def load_dataset(paths, *, energy_unit: str = "eV", force_unit: Optional[str] = None,
                 dipole_unit: str = "eA", force_sign: int = 1, keys: Optional[Mapping[str, str]] = None) -> Dataset:
    """Read one or several files (``.npz`` → :func:`load_npz`, anything else → :func:`load_ase`).

    ``keys`` (PhysNet key → the files' name, :mod:`physnetjax.data.key_mapping`) applies to every file, as the
    units do.

    Several files are concatenated (padded to the largest molecule); a label absent
    from some files is masked for their frames. Duplicated frames across the files
    are reported by a warning, as is a file given twice. ``force_sign`` −1 negates the forces (files that
    store gradients +dE/dR; see :mod:`physnetjax.data.sanity`). Frames without a
    total charge are neutral (Q = 0 is also the model's input); when other frames
    carry a non-zero one, a warning names them (:func:`warn_unknown_charges`).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    parts, seen = [], {}
    for k, p in enumerate(paths):
        check_data_file(p)
        first, index = seen.setdefault(Path(p).resolve(), (p, k))
        if index != k:
            warn_caller(f"{p} is given twice (also as {first}): each of its frames is read twice, so it counts "
                        "double (in averages, fits and calibrations; in training it may also land in both the "
                        "training and the test split); give each file once",
                        PhysNetInputWarning)
        loader = load_npz if str(p).lower().endswith(".npz") else load_ase
        parts.append(loader(p, energy_unit=energy_unit, force_unit=force_unit, dipole_unit=dipole_unit, keys=keys))
    data = parts[0] if len(parts) == 1 else concatenate(parts)
    if len(parts) > 1:
        warn_duplicates(data, ", ".join(str(p) for p in paths))
    warn_unknown_charges(data, ", ".join(str(p) for p in paths))
    if force_sign not in (1, -1):
        raise ValueError(f"force_sign must be 1 or -1, received {force_sign}")
    return data if force_sign == 1 else dataclasses.replace(data, F=-data.F)


def load_dataset_parts(parts: Mapping[str, Sequence], **reading) -> tuple[Dataset, dict[str, int]]:
    """Read named groups of files (a run's ``{"training": ..., "validation": ..., "test": ...}`` files) as one
    Dataset, the groups' frames one after the other in the mapping's order, and the number of frames of each group;
    ``reading`` as :func:`load_dataset` takes it, for every file. A frame of a group that is also in an earlier
    group warns, naming both (a test frame that is also trained on measures nothing)."""
    datasets = {name: load_dataset(paths, **reading) for name, paths in parts.items()}
    seen: dict[int, tuple[str, str]] = {}
    for name, part in datasets.items():
        digests = [int(d) for d in dataset_digests(part)]
        shared = [(part.sources[k], seen[d]) for k, d in enumerate(digests) if d in seen and seen[d][0] != name]
        if shared:
            (source, (earlier, first)), more = shared[0], len(shared) - 1
            warn_caller(f"{len(shared)} frame(s) of the {name} files are also among the {earlier} files' (e.g. "
                        f"{source} = {first}{f', and {more} more' if more else ''}): keys 'Z','R' the same to "
                        "1e-3 Å", PhysNetInputWarning)
        for k, d in enumerate(digests):
            seen.setdefault(d, (name, part.sources[k]))
    data = concatenate(list(datasets.values()))
    return data, {name: len(part.E) for name, part in datasets.items()}


def warn_unknown_charges(data: Dataset, where) -> None:
    """Warn when frames without a total charge (taken as 0 e) sit beside frames of a non-zero charge, and when total
    charges are not whole numbers of e (:data:`FRACTIONAL_CHARGE`).

    The total charge is a model input: a cation whose file lacks ``Q`` (or
    ``info['charge']``) would be fitted, and evaluated, as a neutral molecule.
    """
    unknown = ~data.has_Q
    charged = data.has_Q & (data.Q != 0)
    if unknown.any() and charged.any():
        warn_caller(f"{where}: {int(unknown.sum())} frame(s) carry no total charge (key 'Q', info['charge']) and are "
                    f"taken as neutral (frames {_first_frames(unknown)}, e.g. {data.sources[unknown][0]}), while "
                    f"{int(charged.sum())} carry a non-zero one (e.g. {data.Q[charged][0]:g} e in "
                    f"{data.sources[charged][0]}); give every frame its charge", PhysNetInputWarning)
    fractional = data.has_Q & (np.abs(data.Q - np.round(data.Q)) > FRACTIONAL_CHARGE)
    if fractional.any():
        k = int(np.nonzero(fractional)[0][0])
        warn_caller(f"{where}: total charges that are not whole numbers of e in {int(fractional.sum())} frame(s) "
                    f"(frames {_first_frames(fractional)}, e.g. {data.Q[k]:.6g} e in {data.sources[k]}): a "
                    "molecule's total charge is an integer, and the model takes it as an input; are these summed "
                    "partial (force-field, Mulliken) charges? Give each frame its total charge (key 'Q', "
                    "info['charge'])", PhysNetInputWarning)


FRACTIONAL_CHARGE = 1e-3
"""e: a total charge farther than this from a whole number warns (:func:`warn_unknown_charges`)."""

FLOAT32_ENERGY_RESOLUTION = 1e-4
"""eV: float32 energies whose spacing at the largest |E| exceeds this warn (at −12,300 eV, a base pair's DFT
energy, it is 1 meV)."""


def bundled_dataset_path() -> Path:
    """Path of the bundled ethanol GFN2-xTB dataset (see :mod:`physnetjax.data.generate`)."""
    return Path(__file__).with_name("ethanol_gfn2.npz")


def _real_numbers(path, key: str, value, kind: str = "real numbers") -> np.ndarray:
    """The array ``value`` of ``key`` as stored (integers, float32/64); DataError naming file, key and dtype otherwise.

    Booleans (True read as 1), complex numbers (the imaginary part dropped) and strings or objects are no labels or
    positions; float16 keeps ~3 significant digits (positions 10 Å from the origin rounded to 0.008 Å, an energy of
    −1000 eV to 0.5 eV), less than any QM data has.
    """
    array = np.asarray(value)
    if array.dtype == np.float16:
        raise DataError(f"{path}: key {key!r} is float16, which keeps about 3 significant digits (an energy of -1000 "
                        "eV rounded to 0.5 eV, positions to 0.008 Å): store it as float32 or float64")
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DataError(f"{path}: key {key!r} holds {array.dtype} values, expected {kind}")
    return array


def _check_shape(path, key, value, expected) -> None:
    if value.shape != tuple(expected):
        raise DataError(f"{path}: key {key!r} has shape {value.shape}, expected {tuple(expected)}")


def _first_frames(bad: np.ndarray, limit: int = 5) -> str:
    frames = np.nonzero(bad)[0]
    more = f" (and {len(frames) - limit} more)" if len(frames) > limit else ""
    return ", ".join(str(int(k)) for k in frames[:limit]) + more


def check_atomic_number_range(path, atomic_numbers: np.ndarray) -> None:
    """DataError naming the frames of ``atomic_numbers`` (M, n) with a Z outside [0, 118] (0: padding)."""
    out_of_range = ((atomic_numbers < 0) | (atomic_numbers > MAX_ATOMIC_NUMBER)).any(axis=1)
    if out_of_range.any():
        k = int(np.nonzero(out_of_range)[0][0])
        raise DataError(
            f"{path}: key 'Z' has atomic numbers outside [0, {MAX_ATOMIC_NUMBER}] in frame(s) "
            f"{_first_frames(out_of_range)}; frame {k}: {atomic_numbers[k].tolist()}"
        )


def validate(data: Dataset, path) -> None:
    """Check a freshly read dataset; raises :class:`DataError`, warns on duplicated frames.

    Checks: finite R and labels (NaN/Inf name key and frames); atomic numbers in
    [0, 118]; every frame has ≥ 1 atom; N equals the number of non-zero Z and the
    padding (Z = 0) comes after the real atoms.
    """
    M, n = data.Z.shape
    for key in ("R",) + LABELS:
        value = getattr(data, key)
        bad = ~np.isfinite(value).reshape(M, -1).all(axis=1)
        if bad.any():
            some = (f" (an .npz carries a label for every frame or none: write the frames without {key!r} to another "
                    "file and give both to --data, each frame keeps the labels it has)"
                    if str(path).lower().endswith(".npz") and key in LABELS else "")
            raise DataError(f"{path}: key {key!r} has NaN or Inf in frame(s) {_first_frames(bad)}{some}")
    check_atomic_number_range(path, data.Z)
    bad_n = (data.N < 1) | (data.N > n)
    if bad_n.any():
        raise DataError(f"{path}: key 'N' outside [1, {n}] in frame(s) {_first_frames(bad_n)}")
    real = np.arange(n)[None, :] < data.N[:, None]
    inconsistent = ((data.Z > 0) != real).any(axis=1)
    if inconsistent.any():
        k = int(np.nonzero(inconsistent)[0][0])
        raise DataError(
            f"{path}: key 'N' is inconsistent with the zero padding of 'Z' in frame(s) "
            f"{_first_frames(inconsistent)}; frame {k}: N={int(data.N[k])}, Z={data.Z[k].tolist()} "
            "(the first N atomic numbers must be > 0 and the rest 0)"
        )
    check_stress_labels(data, path)
    check_contacts(data, path)
    warn_length_unit(data, path)
    warn_duplicates(data, path)
    warn_padding_forces(data, path)
    warn_net_force(data, path)


def check_stress_labels(data: Dataset, where) -> None:
    """Refuse stress labels on frames that are not periodic in all three directions (a molecule's or a slab's stress
    has no volume to refer to) and stress components beyond :data:`MAX_ABS_STRESS` (a unit slip: 1 kbar read as
    1 eV/Å³ is 1600 times too large). DataError naming the frames."""
    full = (np.linalg.matrix_rank(data.cell) == 3) if len(data) else np.zeros(0, bool)
    not_bulk = data.has_S & ~full
    if not_bulk.any():
        k = int(np.argmax(not_bulk))
        raise DataError(f"{where}: stress labels on frame(s) {_first_frames(not_bulk)} that are not periodic in all "
                        f"three directions (e.g. {data.sources[k]}, pbc {data.cell[k].any(axis=1).tolist()}): a stress "
                        "refers to the volume of a cell periodic in x, y and z; set pbc and the cell, or drop the "
                        "stress of these frames")
    large = data.has_S & (np.abs(data.S) > MAX_ABS_STRESS).any(axis=(1, 2))
    if large.any():
        k = int(np.argmax(large))
        raise DataError(f"{where}: stress labels beyond {MAX_ABS_STRESS:g} eV/Å³ (160 GPa) in frame(s) "
                        f"{_first_frames(large)} (e.g. {np.abs(data.S[k]).max():.4g} in {data.sources[k]}): stress "
                        "must be in eV/Å³ (ASE's unit); convert kbar (× 6.2415e-4) or GPa (× 6.2415e-3)")


def check_contacts(data: Dataset, where) -> None:
    """Refuse frames with coordinates beyond ±MAX_ABS_COORDINATE Å or atoms closer than MIN_DISTANCE_ERROR;
    warn about atoms closer than MIN_DISTANCE_WARNING (thresholds of :mod:`physnetjax.validation`).

    Such a frame has no meaning for a potential-energy surface (at zero distance the
    pair terms divide by zero, so its loss and metrics would be NaN).
    """
    far = (np.abs(data.R) > MAX_ABS_COORDINATE).any(axis=(1, 2))
    if far.any():
        k = int(np.argmax(far))
        r = data.R[k, :data.N[k]]
        extent = float(np.ptp(r, axis=0).max())
        hint = (f"frame {k}'s atoms span only {extent:.3g} Å but lie {float(np.abs(r).max()):.0f} Å from the origin: "
                "translate each frame near the origin (e.g. ASE's atoms.center(about=0) for a molecule, atoms.wrap() for a "
                "periodic cell); so far out float32 resolves positions only to ~1e-3 Å"
                if extent <= MAX_ABS_COORDINATE else "positions must be in Å")
        raise DataError(f"{where}: key 'R' has coordinates beyond ±{MAX_ABS_COORDINATE:g} Å in frame(s) "
                        f"{_first_frames(far)}; {hint}")
    closest = np.full(len(data), np.inf)
    pair = {}
    for k in range(len(data)):
        i, j, d = close_contacts(data.R[k, : data.N[k]])
        if len(d):
            closest[k], pair[k] = d[0], (int(i[0]), int(j[0]))
    for limit, bad in ((MIN_DISTANCE_ERROR, closest < MIN_DISTANCE_ERROR), (MIN_DISTANCE_WARNING, closest < np.inf)):
        if bad.any():
            k = int(np.argmin(closest))
            message = (f"{where}: key 'R': atoms closer than {limit} Å in frame(s) {_first_frames(bad)}; "
                       f"closest: atoms {pair[k][0]}-{pair[k][1]} at {closest[k]:.3g} Å in {data.sources[k]}")
            if limit == MIN_DISTANCE_ERROR:
                units = length_unit_finding(data)
                raise DataError(message + (f"; {units}" if units is not None else
                                           " (overlapping atoms: remove these frames)"))
            warn_caller(message + " (shorter than any bond)", PhysNetInputWarning)


BOND_RATIO_FRAMES = 200
"""Frames (evenly spaced) over which :func:`warn_length_unit` takes the median."""

BOND_RATIO_ATOMS = 64
"""Atoms per frame (evenly spaced) whose nearest neighbours :func:`warn_length_unit` looks up (cost ∝ this × N)."""


def warn_length_unit(data: Dataset, where) -> None:
    """Warn (:class:`~physnetjax.errors.LengthUnitWarning`) with :func:`length_unit_finding`'s message, if any."""
    finding = length_unit_finding(data)
    if finding is not None:
        warn_caller(f"{where}: key 'R': {finding}", LengthUnitWarning)


def length_unit_finding(data: Dataset) -> Optional[str]:
    """A finding when the atoms sit farther from (bohr: 1.89×, pm: 100×) or closer to (nm: 0.1×) their nearest
    neighbours than covalent bonds, naming the unit the positions look to be in; None when they do not.

    Every label stays consistent with positions in bohr read as Å, so nothing else
    notices; but the model then learns a stretched molecule and every prediction at
    a real (Å) geometry is an extrapolation. The statistic is the median over atoms
    (up to :data:`BOND_RATIO_ATOMS` per frame with ≥ 2 atoms) of the nearest-neighbour distance (the minimum image in
    a periodic frame) over the sum of the two covalent radii (:func:`physnetjax.validation.bond_length_ratios`),
    outside
    [:data:`~physnetjax.validation.BOND_RATIO_MIN`, :data:`~physnetjax.validation.BOND_RATIO_MAX`]; rare-gas
    clusters and other non-bonded data exceed the upper bound legitimately (then ignore this).
    """
    frames = np.nonzero(data.N >= 2)[0]
    if not len(frames):
        return None
    frames = frames[np.unique(np.linspace(0, len(frames) - 1, min(len(frames), BOND_RATIO_FRAMES)).astype(int))]
    ratios = []
    for k in frames:
        n = int(data.N[k])
        rows = np.unique(np.linspace(0, n - 1, min(n, BOND_RATIO_ATOMS)).astype(int))
        ratios.append(bond_length_ratios(data.Z[k, :n], data.R[k, :n], rows, data.cell[k]))
    median = float(np.median(np.concatenate(ratios)))
    if BOND_RATIO_MIN <= median <= BOND_RATIO_MAX:
        return None
    return (f"atoms sit {median:.2f}× the covalent bond length from their nearest neighbours "
            f"(median over atoms of {len(frames)} frame(s); ~1.0 for molecules in Å, 1.89 for bohr, 0.1 for nm read "
            f"as Å); {position_unit_question(median)}")


NET_FORCE_TOLERANCE = 1e-2
"""eV/Å: |Σ_i F_i| of an isolated molecule above this is reported (it should be ~0)."""


def warn_padding_forces(data: Dataset, where) -> None:
    """Warn (naming frames) when a frame's forces are non-zero on its padding atoms (Z = 0, index ≥ N).

    Padding atoms are not atoms: their force labels are never trained on. Non-zero values
    there mean the rows of F do not line up with those of Z and R (F padded or ordered
    otherwise, or taken from another file), so the forces of the real atoms may be
    another atom's too.
    """
    padding = np.arange(data.max_atoms)[None, :] >= data.N[:, None]
    size = np.where(padding[..., None], np.abs(data.F), 0.0).max(axis=(1, 2))
    bad = data.has_F & (size > 0)
    if bad.any():
        k = int(np.argmax(np.where(bad, size, 0.0)))
        warn_caller(
            f"{where}: key 'F' is non-zero on padding atoms (Z = 0, beyond N) in {int(bad.sum())} frame(s) "
            f"(frames {_first_frames(bad)}; up to {size[k]:.3g} eV/Å in {data.sources[k]}, N = {int(data.N[k])}); "
            "the padding is not trained on, but the force rows may not line up with Z and R: check that F is "
            "padded like Z (real atoms first)", PhysNetInputWarning)


def warn_net_force(data: Dataset, where) -> None:
    """Warn (naming frames) when the forces of a frame do not sum to zero.

    The energy of an isolated molecule is translation invariant, so its forces sum to
    zero; a net force means the labels are not −∂E/∂R of the positions (e.g. forces
    read with an MD constraint such as ASE's FixCom applied). No model with correct
    forces can fit them. Frames of periodic data sets are not distinguished here.
    """
    real = np.arange(data.max_atoms)[None, :, None] < data.N[:, None, None]
    net = np.linalg.norm(np.where(real, data.F, 0.0).sum(axis=1), axis=-1)
    bad = data.has_F & (net > NET_FORCE_TOLERANCE)
    if bad.any():
        k = int(np.argmax(np.where(bad, net, 0.0)))
        warn_caller(
            f"{where}: key 'F': the forces of {int(bad.sum())} frame(s) do not sum to zero "
            f"(frames {_first_frames(bad)}; largest |ΣF| = {net[k]:.3g} eV/Å in {data.sources[k]}); "
            "forces of an isolated molecule must sum to zero — were they read with a constraint applied?",
        )


def warn_duplicates(data: Dataset, where) -> None:
    """Warn (naming frames) when two frames have identical Z and positions: the same digest
    (:func:`physnetjax.data.frame_digests.dataset_digests`, positions rounded to 1e-3 Å), so that a frame written to
    text (extxyz: 8 decimals) and the same frame in binary (.npz, float32 or float64) count as one.
    """
    _, first, inverse, counts = np.unique(dataset_digests(data), return_index=True, return_inverse=True,
                                          return_counts=True)
    inverse = inverse.reshape(-1)
    dup = np.nonzero(counts[inverse] > 1)[0]
    dup = dup[dup != first[inverse[dup]]]
    if len(dup):
        pairs = ", ".join(f"{data.sources[k]} = {data.sources[first[inverse[k]]]}" for k in dup[:5])
        more = f" (and {len(dup) - 5} more)" if len(dup) > 5 else ""
        message = f"{where}: keys 'Z','R': {len(dup)} duplicated frame(s): {pairs}{more}"
        warn_caller(message)
