"""One input-validation layer for every entry point: predict, calculator, MD, check and the trainer.

A structure is (Z, R[, Q][, cell, pbc]). :func:`validate_structure` checks it before
any neighbor list or model call, so a bad input is an exception that names the atoms,
frame and values involved instead of a NaN, a wrong number or a crash in C++ code:

* shapes (Z (n,), R (n, 3), cell (3, 3), pbc (3,)) and dtypes (integer-valued Z,
  real-valued R; no bool, complex or object arrays);
* positions finite and within ±:data:`MAX_ABS_COORDINATE` Å;
* atomic numbers in [1, max_atomic_number] (named by element symbol);
* total charge finite and not above ΣZ (a charge of +ΣZ removes every electron);
* the cell, for the periodic directions: finite vectors spanning a lattice whose
  layer spacings are at least :data:`MIN_DISTANCE_ERROR` (a zero, flat or
  degenerate cell has no neighbor list);
* interatomic distances (including periodic images): below
  :data:`MIN_DISTANCE_ERROR` an error, below :data:`MIN_DISTANCE_WARNING` a
  warning (an error with ``strict=True``, as MD uses it).

The checks of a structure against a model's training data (elements, total charges and
compositions it never saw) use the functions here through
:class:`physnetjax.training_record.TrainingRecord`.

Thresholds (Å):

* :data:`MIN_DISTANCE_ERROR` = 0.1: far inside every nucleus-pair distance that
  has a meaning for a potential-energy surface (the shortest bond, H₂⁺, is 1.06 Å;
  H₂ 0.74 Å); at 0 the pair terms divide by zero.
* :data:`MIN_DISTANCE_WARNING` = 0.5: below any covalent bond length; no training
  set of molecules at chemical temperatures holds such contacts, so the model
  extrapolates there.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Optional

import numpy as np

from physnetjax.errors import (CloseContactWarning, LengthUnitWarning, OutputPathError, PhysNetInputError,
                               PhysNetInputWarning, displayed, warn_caller)
from physnetjax.units import BOHR

MIN_DISTANCE_ERROR = 0.1
"""Å: two atoms closer than this are an input error (the structure has no physical meaning)."""

MIN_DISTANCE_WARNING = 0.5
"""Å: two atoms closer than this give a :class:`PhysNetInputWarning` (an error with ``strict``)."""

TRAINED_ELEMENTS_KEY = "trained_elements"
"""Checkpoint metadata key: sorted atomic numbers present in the training frames (written by the trainer)."""

TRAINED_CHARGES_KEY = "trained_charges"
"""Checkpoint metadata key: sorted distinct total charges Q (e) of the training frames (written by the trainer)."""

TRAINED_CHARGE_STATES_KEY = "trained_charge_states"
"""Checkpoint metadata key: {Hill formula: its distinct total charges Q (e)} of the training frames, written by the
trainer when they hold several total charges (:func:`charge_states`)."""

MAX_RECORDED_CHARGE_STATES = 10_000
"""Most compositions a ``trained_charge_states`` record lists; data of more compositions get none."""

CHARGE_MATCH_TOLERANCE = 1.0e-6
"""e: a total charge within this of a trained one counts as trained."""

ELEMENT_ENERGIES_FIT_KEY = "element_energies_fit"
"""Checkpoint metadata key: how the trainer fitted the element reference energies E0
(:meth:`physnetjax.data.reference.ReferenceFit.to_dict`; None when the training frames held no energies)."""

MAX_ABS_COORDINATE = 1.0e4
"""Å: a coordinate beyond ±this is refused (float32 resolves it only to ~1e-3 Å; translate the structure)."""

SYMBOLS = (
    "X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
    "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb "
    "Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf "
    "Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og"
).split()
"""Element symbols indexed by atomic number (0 → "X")."""

MAX_ATOMIC_NUMBER = len(SYMBOLS) - 1
"""Largest atomic number of the periodic table (Og, 118)."""


def element(z: int) -> str:
    """``"C (Z=6)"``; ``"Z=200"`` beyond the periodic table."""
    z = int(z)
    return f"{SYMBOLS[z]} (Z={z})" if 0 < z < len(SYMBOLS) else f"Z={z}"


def _listed(values: Iterable, limit: int = 5) -> str:
    values = list(values)
    more = f" (and {len(values) - limit} more)" if len(values) > limit else ""
    return ", ".join(str(v) for v in values[:limit]) + more


def _prefix(where: str) -> str:
    return f"{where}: " if where else ""


def _array(value, name: str, expected: str, where: str) -> np.ndarray:
    """``np.asarray(value)``, or PhysNetInputError naming ``name`` for nested lists of different lengths (NumPy's
    "setting an array element with a sequence")."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError):
        raise PhysNetInputError(f"{_prefix(where)}{name} must be an array of {expected}; received nested sequences "
                                "of different lengths") from None


def check_atomic_numbers(atomic_numbers, max_atomic_number: int, where: str = "") -> np.ndarray:
    """Z as int32 (n,), every entry an integer in [1, max_atomic_number] (the model's; with
    :data:`MAX_ATOMIC_NUMBER`, the periodic table's, as the message then says).

    Raises:
      PhysNetInputError: wrong shape or dtype, non-integer values, or elements outside
        the model's range (named with symbol and atom indices).
    """
    z = _array(atomic_numbers, "atomic_numbers", "(n,) integers", where)
    if z.ndim != 1:
        raise PhysNetInputError(f"{_prefix(where)}atomic_numbers must have shape (n,), received shape {z.shape}")
    if z.shape[0] == 0:
        raise PhysNetInputError(f"{_prefix(where)}a structure needs at least one atom, received none")
    if z.dtype == bool or not (np.issubdtype(z.dtype, np.integer) or np.issubdtype(z.dtype, np.floating)):
        raise PhysNetInputError(f"{_prefix(where)}atomic_numbers must be integers, received dtype {z.dtype}")
    given = z  # the messages name the values given: a float 2**32 + 6 is not "-1"
    if not np.issubdtype(z.dtype, np.integer):
        bad = ~np.isfinite(z) | (np.mod(np.where(np.isfinite(z), z, 0), 1) != 0)
        if bad.any():
            raise PhysNetInputError(
                f"{_prefix(where)}atomic_numbers must be integers; atom(s) {_listed(np.nonzero(bad)[0])} "
                f"have {_listed(z[bad])}")
        z = np.where(np.abs(z) < 2**31, z, -1).astype(np.int64)
    bad = (z < 1) | (z > max_atomic_number)
    if bad.any() and max_atomic_number == MAX_ATOMIC_NUMBER:
        raise PhysNetInputError(f"{_prefix(where)}atomic number(s) {_listed(sorted({int(v) for v in given[bad]}))} "
                                f"at atom(s) {_listed(np.nonzero(bad)[0])} are not elements (Z = "
                                f"1..{MAX_ATOMIC_NUMBER})")
    if bad.any():
        found = sorted({int(v) for v in given[bad]})
        raise PhysNetInputError(
            f"{_prefix(where)}element(s) {_listed(element(v) for v in found)} at atom(s) "
            f"{_listed(np.nonzero(bad)[0])} are outside this model's range Z = 1..{max_atomic_number} "
            f"({element(max_atomic_number)}); use a model trained with these elements")
    return z.astype(np.int32)


def check_positions(positions, num_atoms: int, where: str = "") -> np.ndarray:
    """R as a float array (n, 3) (float32/float64 kept, other real dtypes → float64), finite and bounded.

    Raises:
      PhysNetInputError: wrong shape or dtype, NaN/Inf or |coordinate| > MAX_ABS_COORDINATE
        (naming the atoms).
    """
    r = _array(positions, "positions", "(n, 3) numbers in Å", where)
    if r.shape != (num_atoms, 3):
        raise PhysNetInputError(
            f"{_prefix(where)}positions must have shape (n, 3) = ({num_atoms}, 3) to match atomic_numbers, "
            f"received shape {r.shape}")
    if r.dtype == bool or not (np.issubdtype(r.dtype, np.integer) or np.issubdtype(r.dtype, np.floating)):
        raise PhysNetInputError(f"{_prefix(where)}positions must be real numbers in Å, received dtype {r.dtype}")
    if r.dtype not in (np.float32, np.float64):
        r = r.astype(np.float64)
    finite = np.isfinite(r).all(axis=1)
    if not finite.all():
        bad = np.nonzero(~finite)[0]
        raise PhysNetInputError(
            f"{_prefix(where)}positions contain NaN or Inf at atom(s) {_listed(bad)} "
            f"(first: {r[bad[0]].tolist()})")
    far = (np.abs(r) > MAX_ABS_COORDINATE).any(axis=1)
    if far.any():
        bad = np.nonzero(far)[0]
        raise PhysNetInputError(
            f"{_prefix(where)}positions beyond ±{MAX_ABS_COORDINATE:g} Å at atom(s) {_listed(bad)} "
            f"(first: {r[bad[0]].tolist()}); are they in Å? There float32 resolves coordinates only to ~1e-3 Å: "
            "translate the structure near the origin")
    return r


def check_range(name: str, value, unit: str, lowest: Optional[float] = None, *, strict: bool = False,
                highest: Optional[float] = None, why: str = "", finite: bool = True) -> float:
    """``value`` as a float; PhysNetInputError naming ``name`` unless it is finite and, with ``lowest``, > ``lowest``
    (``strict``) or >= ``lowest``; ``unit`` is the unit of ``value`` and ``lowest`` for the message ("" for a
    ratio), e.g. ``--timestep must be finite and > 0 fs, received inf``. The one check of a physical setting's range
    (MD, spectra, learn, generate, the neighbor-list builders' cutoffs, skin and capacity multiplier).
    ``highest``: also at most this (``why`` says why in the message). ``finite=False`` lets +inf pass (the cutoff
    of all pairs of an isolated molecule). A value that is not one real number (None, a string, True) is named as
    such."""
    of_unit, in_unit = (f" of {unit}", f" {unit}") if unit else ("", "")
    if not is_real_number(value):
        raise PhysNetInputError(f"{name} must be a number{of_unit}, received {value!r} ({type(value).__name__})")
    number = float(value)
    if highest is not None and math.isfinite(number) and number > highest:
        raise PhysNetInputError(f"{name} must be at most {highest:g}{in_unit}{f' ({why})' if why else ''}, "
                                f"received {value}")
    allowed = math.isfinite(number) or (not finite and number == math.inf)
    if lowest is None:
        if not allowed:
            raise PhysNetInputError(f"{name} must be a {'finite ' if finite else ''}number{of_unit}, received {value}")
    elif not allowed or number < lowest or (strict and number == lowest):
        raise PhysNetInputError(f"{name} must be {'finite and ' if finite else ''}{'>' if strict else '>='} "
                                f"{lowest:g}{in_unit}, received {value}")
    return number


MAX_TEMPERATURE_K = 1e6
"""Highest temperature MD, the learning loop and data.generate accept (target, ramp end, or the kinetic temperature of given start momenta), in K.

k_B T is 86 eV at 1e6 K, eight times the strongest bond (C≡O, 11 eV): no chemistry is left, far outside any data
a potential was trained on. Higher values are slips (momenta in other units, an exponent too many) that ran to
the end with exit 0 (the atoms fly apart beyond the cutoff, where energy is trivially conserved). The bound is
loose on purpose: two H atoms shot at each other at 0.39 Å/fs (a close-contact experiment) are 1.2e5 K."""

MAX_TEMPERATURE_REASON = "k_B T = 86 eV there, beyond any chemistry"
"""Why :data:`MAX_TEMPERATURE_K`, as messages say it."""

MAX_PRESSURE_BAR = 1e8
"""Largest pressure magnitude (target or ramp end) NPT accepts, in bar: 10 TPa.

There P × 1 Å³ is 62 eV, beyond the strongest bond (C≡O, 11 eV), and 28 times the pressure at the centre of the
Earth (3.6e6 bar); the highest static pressures of experiments are ~1e7 bar. Larger values are slips (another
unit, an exponent too many) that collapsed the cell within the first steps, and the run stopped with a message
about its neighbor lists or its cell instead of the pressure."""

MAX_PRESSURE_REASON = "10 TPa: P × 1 Å³ = 62 eV there, beyond any chemistry"
"""Why :data:`MAX_PRESSURE_BAR`, as messages say it."""


def check_pressure(name: str, value) -> None:
    """PhysNetInputError naming ``name`` unless ``value`` (bar) is finite with |value| at most
    :data:`MAX_PRESSURE_BAR` (negative pressures, tension, are allowed)."""
    pressure = check_range(name, value, "bar")
    if abs(pressure) > MAX_PRESSURE_BAR:
        raise PhysNetInputError(f"{name} must be within ±{MAX_PRESSURE_BAR:g} bar ({MAX_PRESSURE_REASON}), "
                                f"received {value}: is it in bar?")


def check_temperature(name: str, value) -> None:
    """PhysNetInputError naming ``name`` unless ``value`` (K) is finite, >= 0 and at most :data:`MAX_TEMPERATURE_K`."""
    check_range(name, value, "K", 0.0, highest=MAX_TEMPERATURE_K, why=MAX_TEMPERATURE_REASON)


def is_real_number(value) -> bool:
    """Whether ``value`` is one real number: a Python, NumPy or 0-d array int or float, not a bool."""
    if isinstance(value, (bool, np.bool_, str, bytes)) or value is None:
        return False
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        return False
    return array.ndim == 0 and (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating))


def check_count(name: str, value, least: int = 1, what: str = "") -> int:
    """``value`` as an int; PhysNetInputError naming ``name`` unless it is an integer (not a float such as 100.0,
    nor a bool) and at least ``least``; ``what`` says what it counts, for the message."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < least:
        raise PhysNetInputError(f"{name} must be an integer >= {least}{f' ({what})' if what else ''}, received "
                                f"{value!r}" + ("" if isinstance(value, (int, np.integer))
                                                and not isinstance(value, (bool, np.bool_))
                                                else f" ({type(value).__name__})"))
    return int(value)


def check_masses(masses, num_atoms: int, names: Optional[Mapping[str, str]] = None) -> np.ndarray:
    """``masses`` as float64 (N,) amu; PhysNetInputError unless N finite values > 0, naming them ``masses`` or as
    ``names`` does (a command line passes ``{"masses": "--masses"}``)."""
    name = displayed("masses", names)
    masses = np.asarray(masses, dtype=np.float64)
    if masses.shape != (num_atoms,):
        raise PhysNetInputError(f"{name} must have shape ({num_atoms},), one mass per atom, received shape "
                                f"{masses.shape}")
    bad = ~(np.isfinite(masses) & (masses > 0))
    if bad.any():
        raise PhysNetInputError(f"{name} must be finite and > 0 amu; received {masses[bad].tolist()} "
                                f"at atom indices {np.nonzero(bad)[0].tolist()}")
    return masses


def check_total_charge(total_charge, atomic_numbers, where: str = "",
                       names: Optional[Mapping[str, str]] = None) -> float:
    """The total charge Q (e) as a float: finite and −ΣZ ≤ Q ≤ ΣZ.

    ``names``: how the messages name it (a command line passes ``{"total_charge": "--total-charge"}``); by default
    ``total_charge``.

    Raises:
      PhysNetInputError: not a real scalar, NaN/Inf, more positive than ΣZ or more negative than −ΣZ.
    """
    name = displayed("total_charge", names)
    q = np.asarray(total_charge)
    if q.shape != () or q.dtype == bool or not (np.issubdtype(q.dtype, np.integer)
                                                 or np.issubdtype(q.dtype, np.floating)):
        raise PhysNetInputError(f"{_prefix(where)}{name} must be a real number in e, received {total_charge!r}")
    q = float(q)
    if not np.isfinite(q):
        raise PhysNetInputError(f"{_prefix(where)}{name} must be finite, received {q}")
    electrons = int(np.sum(atomic_numbers))
    if q > electrons:
        raise PhysNetInputError(
            f"{_prefix(where)}{name} {q:g} e is larger than the number of electrons of the neutral "
            f"structure (ΣZ = {electrons}); is the sign right?")
    if q < -electrons:  # more extra electrons than the structure has: a unit or sign slip, not an anion
        raise PhysNetInputError(
            f"{_prefix(where)}{name} {q:g} e would add more electrons than the neutral structure has (ΣZ = "
            f"{electrons}); the total charge is in e: is the value right?")
    return q


def atoms_total_charge(atoms, total_charge: Optional[float] = None,
                       names: Optional[Mapping[str, str]] = None) -> float:
    """Total charge Q (e, a float) of an ``ase.Atoms``, by the rule the dataset reader (:func:`physnetjax.data.load_ase`)
    uses.

    ``total_charge`` if given, else ``atoms.info["charge"]`` (a real number; None counts as absent), else the sum
    of ASE's per-atom initial charges when any is non-zero (as xTB calculators such as
    tblite read them), else 0. When two of ``total_charge``, ``info["charge"]`` and the
    initial charges are present and differ by more than 1e-6 e, a
    :class:`PhysNetInputWarning` names both values and the one used (``total_charge`` named as
    ``names`` does: a command line passes ``{"total_charge": "--total-charge"}``).
    """
    initial_charges = atoms.get_initial_charges() if atoms.has("initial_charges") else np.zeros(0)
    initial = float(np.sum(initial_charges)) if np.any(initial_charges != 0) else None  # all zero: not set
    info = atoms.info.get("charge")
    if total_charge is not None:
        charge, source = total_charge, displayed("total_charge", names)
    elif info is not None:
        charge, source = info, "info['charge']"
    else:
        return 0.0 if initial is None else initial
    if not is_real_number(charge):
        raise PhysNetInputError(f"{source} must be a real number in e (the total charge), received {charge!r}")
    if total_charge is not None and is_real_number(info) and abs(float(info) - float(charge)) > 1e-6:
        warn_caller(f"the atoms' info['charge'] is {float(info):g} e but {source} is {float(charge):g} e; "
                    f"{source} is used", PhysNetInputWarning)
    if initial is not None and np.isfinite(initial) and abs(initial - float(charge)) > 1e-6:
        warn_caller(f"the atoms' initial charges sum to {initial:g} e but {source} is {float(charge):g} e; "
                    f"{source} is used", PhysNetInputWarning)
    return float(charge)


def layer_spacings(vectors: np.ndarray) -> np.ndarray:
    """Distances (Å) between lattice planes of the lattice spanned by ``vectors`` (k, 3), k ≤ 3.

    For vector i: h_i = √(det G / det G₍ᵢ₎) with G the Gram matrix V Vᵀ and G₍ᵢ₎ the
    Gram matrix without row/column i (det of the empty matrix is 1); for k = 3 this
    is V / |a_j × a_k|, for k = 1 the length |a|. Zero for a degenerate lattice.
    """
    vectors = np.asarray(vectors, np.float64)
    gram = vectors @ vectors.T
    total = np.linalg.det(gram) if len(vectors) else 1.0
    spacings = []
    for i in range(len(vectors)):
        keep = [k for k in range(len(vectors)) if k != i]
        minor = np.linalg.det(gram[np.ix_(keep, keep)]) if keep else 1.0
        spacings.append(np.sqrt(max(total, 0.0) / minor) if minor > 0 else 0.0)
    return np.asarray(spacings)


def check_cell(cell, pbc, where: str = "") -> tuple[Optional[np.ndarray], np.ndarray]:
    """(cell (3, 3) float64 or None when no direction is periodic, pbc (3,) bool).

    For the periodic directions the cell vectors (rows) must be finite and span a
    lattice whose plane spacings are ≥ :data:`MIN_DISTANCE_ERROR` Å (else every atom
    overlaps its own image, and no neighbor list exists). Non-periodic rows may be zero.

    Raises:
      PhysNetInputError: bad shapes, non-finite cell, or a zero, flat or degenerate cell
        for the given pbc (naming pbc, the cell and the offending spacing).
    """
    pbc = np.zeros(3, bool) if pbc is None else np.asarray(pbc)
    if pbc.ndim == 0:
        pbc = np.repeat(pbc, 3)
    if pbc.shape != (3,) or not (pbc.dtype == bool or np.issubdtype(pbc.dtype, np.integer)):
        raise PhysNetInputError(f"{_prefix(where)}pbc must be a bool or three bools, received {pbc!r}")
    pbc = pbc.astype(bool)
    if not pbc.any():
        return None, pbc
    if cell is None:
        raise PhysNetInputError(f"{_prefix(where)}pbc={pbc.tolist()} needs a cell, received none")
    c = np.asarray(cell)
    if c.shape != (3, 3) or not (np.issubdtype(c.dtype, np.integer) or np.issubdtype(c.dtype, np.floating)):
        raise PhysNetInputError(
            f"{_prefix(where)}cell must be a real (3, 3) array of cell vectors (rows, Å), received shape "
            f"{c.shape}, dtype {c.dtype}")
    c = c.astype(np.float64)
    if not np.isfinite(c).all():
        raise PhysNetInputError(f"{_prefix(where)}cell contains NaN or Inf: {c.tolist()}")
    periodic = np.nonzero(pbc)[0]
    spacings = layer_spacings(c[periodic])
    if np.abs(c).max() > MAX_ABS_COORDINATE:
        raise PhysNetInputError(f"{_prefix(where)}cell vectors beyond ±{MAX_ABS_COORDINATE:g} Å: {c.tolist()}")
    if not (spacings >= MIN_DISTANCE_ERROR).all():
        lengths = np.linalg.norm(c[periodic], axis=1)  # a zero vector makes every spacing 0: name it, not vector 0
        culprit = (f" along cell vector {int(periodic[np.argmin(lengths)])} ({lengths.min():.3g} Å long)"
                   if lengths.min() < MIN_DISTANCE_ERROR else _dependent_or_skewed(c, pbc))
        raise PhysNetInputError(
            f"{_prefix(where)}pbc={pbc.tolist()} but the cell is zero, flat or degenerate along the periodic "
            f"direction(s): lattice-plane spacing {float(np.nan_to_num(spacings).min()):.3g} Å{culprit} "
            f"(need >= {MIN_DISTANCE_ERROR} Å); cell = {c.tolist()}. "
            "Set a proper cell or pbc=False")
    return c, pbc


def _dependent_or_skewed(cell: np.ndarray, pbc: np.ndarray) -> str:
    """Why periodic cell vectors of lengths ≥ :data:`MIN_DISTANCE_ERROR` give a lattice-plane spacing below it:
    they are linearly dependent, or they are a very skewed basis (e.g. a + 200 b, b, c) of a lattice whose reduced
    basis (Minkowski, :func:`ase.geometry.minkowski_reduce`) has planes far enough apart."""
    from ase.geometry import minkowski_reduce

    periodic = np.nonzero(pbc)[0]
    if np.linalg.matrix_rank(cell[periodic]) < len(periodic):
        return " (the periodic cell vectors are linearly dependent)"
    spacing = float(layer_spacings(minkowski_reduce(cell, pbc)[0][periodic]).min())
    if spacing < MIN_DISTANCE_ERROR:
        return " (the periodic cell vectors are nearly linearly dependent)"
    return (f" (a very skewed basis of a lattice whose planes are {spacing:.3g} Å apart in its reduced basis: give "
            "the reduced cell, e.g. atoms.set_cell(ase.geometry.minkowski_reduce(atoms.cell, atoms.pbc)[0]) and "
            "atoms.wrap())")


def close_contacts(positions, cell=None, pbc=None, cutoff: float = MIN_DISTANCE_WARNING):
    """Pairs (i, j, d) with i ≤ j closer than ``cutoff`` Å, periodic images included.

    Uses vesin (cell list, O(n)); ``positions`` and ``cell`` must already have
    passed :func:`check_positions` / :func:`check_cell`. Returns three arrays sorted by d.
    """
    import vesin

    r = np.asarray(positions, np.float64)
    pbc = np.zeros(3, bool) if pbc is None else np.asarray(pbc, bool)
    search = vesin.NeighborList(cutoff=float(cutoff), full_list=False)
    i, j, d = search.compute(points=r, box=neighbor_box(cell, pbc), periodic=pbc.tolist() if pbc.any() else False,
                             quantities="ijd")
    order = np.argsort(d, kind="stable")
    i, j = np.minimum(i, j)[order].astype(np.int64), np.maximum(i, j)[order].astype(np.int64)
    return i, j, np.asarray(d)[order]


def neighbor_box(cell, pbc) -> np.ndarray:
    """The (3, 3) box to give a cell-list neighbor search (vesin) for a validated ``cell``/``pbc``.

    Isolated: zeros. Partial PBC: the rows of the non-periodic directions enter no
    image shift, so they are replaced by unit vectors orthogonal to the periodic
    ones (same neighbors); vesin needs an invertible box there, and ASE leaves
    those rows zero (a singular box hangs or crashes vesin).
    """
    pbc = np.asarray(pbc, bool)
    if cell is None or not pbc.any():
        return np.zeros((3, 3))
    box = np.array(cell, np.float64)
    if not pbc.all():
        _, _, vt = np.linalg.svd(box[pbc])
        box[~pbc] = vt[int(pbc.sum()):]
    return box


def check_distances(positions, cell=None, pbc=None, *, strict: bool = False, where: str = "",
                    atomic_numbers=None, contacts=None, warn: bool = True, note: str = "") -> bool:
    """Raise below :data:`MIN_DISTANCE_ERROR`, warn (:class:`~physnetjax.errors.CloseContactWarning`; raise with
    ``strict``) below :data:`MIN_DISTANCE_WARNING`; return whether there are such close contacts.

    With ``atomic_numbers`` (n,), an error about a structure whose atoms sit about 0.1× the covalent bond lengths
    apart (median, :func:`position_unit_slip`) names the unit its positions look to be in: nm read as Å.
    ``contacts``: the pairs (i, j, d) closer than :data:`MIN_DISTANCE_WARNING` as :func:`close_contacts` returns
    them, taken by the caller from a neighbor list it built anyway (the calculator's); None: searched here.
    ``warn=False``: only raise (a caller that has reported close contacts of this system once); ``note``: appended to
    the warning.

    Raises:
      PhysNetInputError: naming the closest pairs, their distances and whether they
        are periodic images.
    """
    i, j, d = close_contacts(positions, cell, pbc) if contacts is None else contacts
    if not len(d):
        return False
    pairs = _listed(f"atoms {a}-{b}" + (" (periodic image)" if a == b else "") + f" at {x:.3g} Å"
                    for a, b, x in zip(i, j, d))
    if d[0] < MIN_DISTANCE_ERROR or strict:
        limit = MIN_DISTANCE_ERROR if d[0] < MIN_DISTANCE_ERROR else MIN_DISTANCE_WARNING
        median = (float(np.median(bond_length_ratios(atomic_numbers, positions)))
                  if atomic_numbers is not None and len(atomic_numbers) >= 2 else 1.0)
        remedy = (f"atoms sit {median:.2f}× the covalent bond length from their nearest neighbours (median over "
                  f"atoms; ~1.0 for a molecule in Å): {position_unit_question(median)}"
                  if median < BOND_RATIO_MIN and position_unit_slip(median) is not None
                  else "check the coordinates (units Å, duplicated atoms, wrapped cell)")
        raise PhysNetInputError(
            f"{_prefix(where)}atoms overlap: {pairs} (below {limit} Å); the structure has no physical meaning "
            f"there — {remedy}")
    if warn:
        warn_caller(f"{_prefix(where)}very close atoms: {pairs} (below {MIN_DISTANCE_WARNING} Å, shorter than any "
                    f"bond); the model extrapolates there{'; ' + note if note else ''}", CloseContactWarning)
    return True


def check_batch_structures(atomic_numbers, positions, what: str = "molecule"
                           ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(Z int32 (n_k,), R (n_k, 3)) of each structure packed into a batch by hand, checked as cheaply as every batch
    can be: once over the whole batch, and structure by structure only to name the one that fails.

    Atomic numbers must be integers of the periodic table (a 0 or −1 gave a plausible energy) and positions finite
    (a NaN position dropped its atom from the neighbor list and returned its force as 0), of matching shapes. What
    :func:`validate_structure` adds for a single prediction (the model's elements, close contacts, the total charge)
    is left to the data checks of the caller; overlapping atoms are :func:`check_batch_overlaps`'.

    Raises:
      PhysNetInputError: naming the structure (``what`` and its index) and the atoms.
    """
    zs = [np.asarray(z) for z in atomic_numbers]
    rs = [np.asarray(r) for r in positions]
    try:
        if any(z.ndim != 1 or r.shape != (z.shape[0], 3) for z, r in zip(zs, rs)):
            raise PhysNetInputError("shapes")
        z_all = check_atomic_numbers(np.concatenate(zs), MAX_ATOMIC_NUMBER)
        r_all = check_positions(np.concatenate(rs), z_all.shape[0])
    except PhysNetInputError:
        for k, (z, r) in enumerate(zip(zs, rs)):
            check_positions(r, check_atomic_numbers(z, MAX_ATOMIC_NUMBER, f"{what} {k}").shape[0], f"{what} {k}")
        raise
    ends = np.cumsum([z.shape[0] for z in zs])[:-1]
    return np.split(z_all, ends), np.split(r_all, ends)


def check_batch_charges(total_charges, electrons, what: str = "molecule") -> np.ndarray:
    """The total charges Q (K,) e of K structures packed into a batch (None: all 0), as float64, checked as
    :func:`check_total_charge` checks one (finite, −ΣZ ≤ Q ≤ ΣZ) and vectorised; ``electrons`` (K,): each
    structure's ΣZ.

    Raises:
      PhysNetInputError: from :func:`check_total_charge` of the first structure that fails, naming it (``what`` and
        its index).
      ValueError: not one charge per structure.
    """
    electrons = np.asarray(electrons).reshape(-1)
    if total_charges is None:
        return np.zeros(electrons.shape[0])
    if np.shape(total_charges) != electrons.shape:
        raise ValueError(f"total_charges must hold one charge per {what} ({electrons.shape[0]}), received shape "
                         f"{np.shape(total_charges)}")
    q = np.asarray(total_charges, dtype=np.float64)
    bad = np.nonzero(~(np.abs(q) <= electrons))[0]  # NaN compares False
    if bad.size:
        k = int(bad[0])
        check_total_charge(q[k], [int(electrons[k])], where=f"{what} {k}")
    return q


OVERLAP_CHUNK_PAIRS = 2 ** 22
"""Atom pairs whose distances :func:`overlapping_frame` computes at once (32 MiB of float64)."""


def overlapping_frame(positions, present=None) -> Optional[tuple[int, int, int, float]]:
    """The first structure of a padded stack with two atoms closer than :data:`MIN_DISTANCE_ERROR`, as (k, i, j, d):
    its index, its closest pair i < j and their distance in Å; None where no structure has such a pair.

    ``positions`` (K, n, 3) Å, finite; ``present`` (K, n) bool, the real atoms (default: all). The distances of all
    pairs, :data:`OVERLAP_CHUNK_PAIRS` at a time, without periodic images: a contact search per structure
    (:func:`close_contacts`) costs ~1 ms each, minutes for a large dataset.
    """
    positions = np.asarray(positions, np.float64)
    count, n = positions.shape[:2]
    present = np.ones((count, n), bool) if present is None else np.asarray(present, bool)
    chunk = max(1, OVERLAP_CHUNK_PAIRS // max(n * n, 1))
    for start in range(0, count, chunk):
        block, real = positions[start:start + chunk], present[start:start + chunk]
        distances = np.linalg.norm(block[:, :, None] - block[:, None, :], axis=-1)
        distances = np.where(real[:, :, None] & real[:, None, :], distances, np.inf)
        distances[:, np.arange(n), np.arange(n)] = np.inf
        overlapping = (distances < MIN_DISTANCE_ERROR).any(axis=(1, 2))
        if overlapping.any():
            k = int(np.argmax(overlapping))
            i, j = sorted(np.unravel_index(np.argmin(distances[k]), (n, n)))
            return start + k, int(i), int(j), float(distances[k, i, j])
    return None


def check_batch_overlaps(positions, dst, src, shifts=None, cells=None, what: str = "molecule") -> None:
    """Refuse overlapping atoms (closer than :data:`MIN_DISTANCE_ERROR`) in a batch, from its edge list.

    ``positions``: the structures' (n_k, 3) Å; ``dst``, ``src`` (E,): the batch's edges as indices into their
    concatenation, with ``shifts`` (E, 3) Å of periodic images; ``cells``: the structures' cells (periodic batch).
    Every pair closer than a cutoff is an edge, so the edges hold every overlap at no extra search.

    Raises:
      PhysNetInputError: from :func:`check_distances` of the first structure with an overlap, naming it.
    """
    r = np.concatenate([np.asarray(p, np.float64) for p in positions])
    vectors = r[src] - r[dst] + (0.0 if shifts is None else np.asarray(shifts, np.float64))
    close = np.nonzero(np.einsum("ij,ij->i", vectors, vectors) < MIN_DISTANCE_ERROR**2)[0]
    if close.size:
        k = int(np.searchsorted(np.cumsum([len(p) for p in positions]), dst[close[0]], side="right"))
        cell, pbc = (None, None) if cells is None else (cells[k], np.ones(3, bool))
        check_distances(positions[k], cell, pbc, where=f"{what} {k}")


def check_trained_elements(atomic_numbers, trained_elements: Optional[Iterable[int]], where: str = "") -> None:
    """Warn (:class:`PhysNetInputWarning`) when Z holds elements outside ``trained_elements``.

    ``trained_elements`` None (unknown, e.g. an old checkpoint) skips the check.
    """
    unseen = unseen_elements(atomic_numbers, trained_elements)
    if unseen:
        z = np.asarray(atomic_numbers)
        atoms = np.nonzero(np.isin(z, unseen))[0]
        warn_caller(
            f"{_prefix(where)}element(s) {_listed(element(v) for v in unseen)} (atom(s) {_listed(atoms)}) "
            f"never occurred in this model's training data (trained on "
            f"{', '.join(SYMBOLS[int(v)] for v in sorted(trained_elements))}); its energies and forces there "
            "are an untrained guess", PhysNetInputWarning)


def check_dataset_elements(atomic_numbers, num_atoms, trained_elements: Optional[Iterable[int]],
                           where: str = "") -> None:
    """Warn (:class:`PhysNetInputWarning`) when frames hold elements outside ``trained_elements``.

    ``atomic_numbers`` (M, N_max) padded per frame, ``num_atoms`` (M,) real atoms per frame;
    the warning names the elements and how many frames hold them. ``trained_elements``
    None (unknown) skips the check.
    """
    z = np.asarray(atomic_numbers)
    real = np.arange(z.shape[1])[None, :] < np.asarray(num_atoms)[:, None]
    unseen = unseen_elements(np.unique(z[real]), trained_elements)
    if unseen:
        frames = np.nonzero((np.isin(z, unseen) & real).any(axis=1))[0]
        warn_caller(
            f"{_prefix(where)}element(s) {_listed(element(v) for v in unseen)} (in {len(frames)} of {len(z)} "
            f"frames, first frame {frames[0]}) never occurred in this model's training data (trained on "
            f"{', '.join(SYMBOLS[int(v)] for v in sorted(trained_elements))}); its energies and forces there "
            "are an untrained guess", PhysNetInputWarning)


def unseen_elements(atomic_numbers, trained_elements: Optional[Iterable[int]]) -> list[int]:
    """Sorted elements of ``atomic_numbers`` absent from ``trained_elements`` ([] when that is None)."""
    if trained_elements is None:
        return []
    return sorted(set(int(v) for v in np.unique(atomic_numbers)) - set(int(v) for v in trained_elements))


def distinct_charges(total_charges) -> list[float]:
    """Sorted distinct total charges (e) of ``total_charges``, merged within :data:`CHARGE_MATCH_TOLERANCE`."""
    distinct: list[float] = []
    for q in np.sort(np.asarray(total_charges, dtype=np.float64).ravel()):
        if not distinct or q - distinct[-1] > CHARGE_MATCH_TOLERANCE:
            distinct.append(float(q))
    return distinct


def untrained_charges(total_charges, trained_charges: Optional[Iterable[float]]) -> list[float]:
    """Sorted distinct values of ``total_charges`` farther than the tolerance from every trained charge."""
    if trained_charges is None:
        return []
    trained = np.asarray(list(trained_charges), dtype=np.float64)
    return [q for q in distinct_charges(total_charges)
            if trained.size == 0 or np.abs(trained - q).min() > CHARGE_MATCH_TOLERANCE]


def _charges_text(charges: Iterable[float]) -> str:
    return ", ".join(f"{float(q):+g}" if q else "0" for q in charges)


def formula(atomic_numbers) -> str:
    """Hill formula of the atoms (Z = 0 padding ignored): C and H first when C is present, then alphabetical."""
    z = np.asarray(atomic_numbers).reshape(-1)
    elements, counts = np.unique(z[z > 0], return_counts=True)
    amounts = {SYMBOLS[int(e)] if 0 < e < len(SYMBOLS) else f"Z{int(e)}": int(n) for e, n in zip(elements, counts)}
    order = (["C", "H"] if "C" in amounts else []) + sorted(s for s in amounts if not ("C" in amounts and s in "CH"))
    return "".join(s + (str(amounts[s]) if amounts[s] > 1 else "") for s in order if s in amounts)


def undetermined_compositions(atomic_numbers, num_atoms, fit: Optional[dict], mask=None) -> dict[str, list[int]]:
    """Formula → frames (ascending) of the frames whose composition the training compositions do not determine.

    ``atomic_numbers`` (M, N_max) padded per frame, ``num_atoms`` (M,), ``mask`` (M,) bool the frames to judge
    (None: all). A composition is determined when its
    counts over the trained elements lie in the span of the fit's ``basis`` (then Σ_Z n_Z E0[Z] is fixed by
    the data, whatever the split of E0 among elements). Frames with elements outside the fit's ``elements``
    are left out (:func:`check_dataset_elements` names those), and so is everything when ``fit`` is None or
    lacks a ``basis`` (a checkpoint from before that record).
    """
    if not fit or fit.get("basis") is None or not fit.get("degenerate", True):
        return {}
    elements = np.asarray(fit.get("elements", []), np.int64)
    basis = np.asarray(fit["basis"], np.float64).reshape(-1, len(elements))
    z = np.asarray(atomic_numbers)
    z = np.where(np.arange(z.shape[1])[None, :] < np.asarray(num_atoms)[:, None], z, 0)
    counts = (z[:, :, None] == elements[None, None, :]).sum(axis=1).astype(np.float64)
    known = ((z > 0) == np.isin(z, elements)).all(axis=1)
    if mask is not None:
        known &= np.asarray(mask, bool)
    rows, inverse = np.unique(counts, axis=0, return_inverse=True)
    outside = {}
    for k, row in enumerate(rows):
        residual = row - basis.T @ np.linalg.lstsq(basis.T, row, rcond=None)[0] if len(basis) else row
        frames = np.nonzero((inverse.reshape(-1) == k) & known)[0]
        if len(frames) and np.linalg.norm(residual) > 1e-8 * max(np.linalg.norm(row), 1.0):
            outside[formula(np.repeat(elements, row.astype(np.int64)))] = [int(f) for f in frames]
    return outside


def check_reference_compositions(atomic_numbers, num_atoms, fit: Optional[dict], where: str = "",
                                 consequence: str = "", mask=None) -> list[str]:
    """Warn (:class:`PhysNetInputWarning`) about frames whose absolute energies carry an undetermined offset.

    When the training compositions did not determine the element reference energies E0 (e.g. one molecule,
    where only Σ_Z n_Z E0[Z] of that stoichiometry is fixed), the trainer split E0 among the elements by a
    prior; a composition outside the span of the training compositions (:func:`undetermined_compositions`)
    gets an energy offset from that choice that no data fixed. Forces, and energy differences between
    structures of one composition, do not depend on it. ``consequence`` ends the message (e.g. what the
    caller reports that holds the offset); ``mask`` as in :func:`undetermined_compositions`. Returns the
    formulas warned about.
    """
    outside = undetermined_compositions(atomic_numbers, num_atoms, fit, mask)
    if outside:
        elements = np.asarray(fit["elements"], np.int64)
        trained = ", ".join(formula(np.repeat(elements, row)) for row in fit["basis"])
        frames = sum(len(v) for v in outside.values())
        total = len(np.asarray(atomic_numbers))
        listed = _listed(name if total == 1 else
                         f"{name} ({f'{len(v)} frames, first {v[0]}' if len(v) > 1 else f'frame {v[0]}'})"
                         for name, v in outside.items())
        choice = fit.get("method") + (f", {fit['prior']} prior" if fit.get("prior") else "")
        counted = f" in {frames} of {total} frames" if total > 1 else ""
        warn_caller(
            f"{_prefix(where)}composition(s) {listed}{counted} are not combinations of the training "
            f"compositions ({trained}), which fixed only {fit.get('rank')} combination(s) of the element "
            f"reference energies E0 of {', '.join(SYMBOLS[int(e)] for e in elements)}; the split of E0 among "
            f"the elements is the trainer's choice ({choice}), so absolute energies of these "
            "compositions carry an offset that the training data never determined"
            f"{'; ' + consequence if consequence else ''}; forces, and energy differences between structures "
            "of one composition, are unaffected", PhysNetInputWarning)
    return list(outside)


SEEDS = 2**32
"""Seeds are integers in [0, SEEDS): without x64 JAX's ``PRNGKey`` keeps the low 32 bits of a larger seed (2**32
draws seed 0's numbers) and overflows beyond 2**63."""


def check_seed(seed, what: str = "seed", count: int = 1) -> int:
    """``seed`` as an int after checking that it and the ``count`` − 1 seeds after it (ensemble members) are in
    [0, :data:`SEEDS`).

    Raises:
      PhysNetInputError: naming ``what`` and the range.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= SEEDS - count:
        members = f" (the run also uses the {count - 1} seed(s) after it)" if count > 1 else ""
        raise PhysNetInputError(f"{what} must be an integer from 0 to {SEEDS - count}{members}: JAX keeps 32 bits of "
                                f"a seed, so a larger one repeats a smaller one's numbers; received {seed!r}")
    return int(seed)


def _check_not_empty(path, what: str) -> None:
    """Refuse an empty output path (``--out ''``, a shell variable that was never set): ``Path("")`` is the current
    directory, where the outputs would land unasked."""
    if str(path).strip() == "":
        raise OutputPathError(f"{what} is empty: give a path (use . for the current directory)")


def check_output_path(path, *, overwrite: bool = False, what: str = "output") -> Path:
    """``path`` (an output file) as a Path after checking, before any expensive work, that it can be written.

    The parent directory must exist (it is not created: a mistyped folder is an error) and
    be writable; ``path`` must not be a directory, and an existing file is refused unless
    ``overwrite``.

    Raises:
      OutputPathError: naming the path and what to do.
    """
    _check_not_empty(path, what)
    if str(path).endswith(("/", os.sep)):  # Path drops the slash: "run.xyz/" would be written as a file
        raise OutputPathError(f"{what} {path} ends in a path separator, a directory; give a file name")
    path = Path(path)
    parent = path.parent
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a directory; give a file name")
    if path.exists() and not overwrite:
        raise OutputPathError(f"{what} {path} already exists; choose another path or remove it")
    if parent.exists() and not parent.is_dir():
        raise OutputPathError(f"{what} {path}: {parent} is a file, not a directory; choose another {what}")
    if not parent.is_dir():
        raise OutputPathError(f"{what} {path}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {path}: directory {parent} is not writable")
    try:  # os.access answers yes to root even where no file can be made (/proc, /sys, read-only mounts)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as error:
        raise OutputPathError(f"{what} {path}: directory {parent} does not take new files "
                              f"({error.strerror or error})") from error
    return path


def check_distinct_files(outputs, inputs=(), may_equal=()) -> None:
    """Refuse an output file that is another output of the same run, one of its input files, or inside an input
    directory (a checkpoint): writing it would destroy what the other holds (MD's checkpoint over its trajectory,
    ``eval``'s predictions over the labelled data they were compared with, a report into a checkpoint).

    Args:
      outputs, inputs: ``(what, path)`` pairs as messages name them (e.g. ``("--out", "run.xyz")``); a path of None
        is skipped, and so is an input that does not exist (nothing to replace: its reader names it missing). Paths
        are compared resolved (symbolic links followed) and, where both exist, as files (a hard link is the same
        file).
      may_equal: ``(output what, input what)`` pairs that may be one file (an MD checkpoint rewritten by the run that
        restarted from it).

    Raises:
      OutputPathError: naming both.
    """
    def resolved(pairs):
        return [(what, Path(path).resolve()) for what, path in pairs if path is not None]

    outputs = resolved(outputs)
    inputs = [(what, path) for what, path in resolved(inputs) if path.exists()]
    for k, (what, path) in enumerate(outputs):
        for other, other_path in outputs[k + 1:]:
            if path == other_path:
                raise OutputPathError(f"{what} and {other} are the same file {path}: give them different paths")
        for source, source_path in inputs:
            if (what, source) in may_equal:
                continue
            if path == source_path or (path.exists() and os.path.samefile(path, source_path)):  # or a hard link
                raise OutputPathError(f"{what} {path} is also {source}" + ("" if path == source_path else
                                      f" {source_path} (another name of the same file)") + ": writing it would "
                                      f"replace the input; give {what} another path")
            if source_path.is_dir() and source_path in path.parents:
                raise OutputPathError(f"{what} {path} is inside {source} {source_path}: writing it would change "
                                      f"{source}; give {what} a path outside it")


def check_output_directory(path, *, what: str = "--out", files: Iterable[str] = ()) -> Path:
    """``path`` (an output directory) as a Path, created if missing, after checking it can be written.

    ``files`` are the names of the files the tool will write in it (replacing old ones);
    none may be a directory.

    Raises:
      OutputPathError: ``path`` is a file, cannot be created (its nearest existing ancestor,
        named, is a file or not writable: :func:`check_directory_creatable`), or is not
        writable, or one of ``files`` in it is a directory, or ``path`` is empty.
    """
    _check_not_empty(path, what)
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{what} {path} exists and is not a directory")
    if not path.exists():
        check_directory_creatable(path, what=what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputPathError(f"{what} {path}: cannot create the directory ({error.strerror or error})") from error
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {path}: directory is not writable")
    for name in files:
        if (path / name).is_dir():
            raise OutputPathError(f"{what} {path}: {path / name} is a directory where the output file {name} goes; "
                                  f"remove it or choose another {what}")
    return path


def check_directory_creatable(path, *, what: str = "--out") -> Path:
    """``path`` (an output directory written at the end of a tool's work) as a Path, checked before the work.

    Its missing parent folders are created with it, as for every output directory (an output
    file's folder must exist instead: :func:`check_output_path`), so the nearest existing
    ancestor must be a writable directory. Whether ``path`` itself may be replaced is the caller's.

    Raises:
      OutputPathError: the nearest existing ancestor is a file or is not writable, or ``path`` is empty.
    """
    _check_not_empty(path, what)
    path = Path(path)
    ancestor = next((p for p in path.absolute().parents if p.exists()), path.absolute())
    if not ancestor.is_dir():
        raise OutputPathError(f"{what} {path}: {ancestor} is a file, not a folder the directory can be created in; "
                              f"choose another {what}")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {path}: directory {ancestor} is not writable")
    return path


def check_charge_model(model, total_charge, trained_charges: Optional[Iterable[float]] = None,
                       where: str = "") -> None:
    """Warn (:class:`PhysNetInputWarning`) when the total charge Q lies outside what the model was trained on.

    With ``trained_charges`` known (checkpoint metadata, see
    :class:`~physnetjax.training_record.TrainingRecord`), a Q none of the training frames
    had warns: a model with charges extrapolates to a charge state it never saw (its charge
    head spreads Q over the atoms, but the energy of that state was never fitted); a model
    without charges gives the energy and forces of its trained state whatever Q is. With the
    record unknown (older checkpoints) only a non-zero Q given to a model without charges warns.
    """
    q = float(total_charge)
    charges_model = bool(getattr(model, "charges", False))
    if trained_charges is not None:
        if not untrained_charges([q], trained_charges):
            return
        trained = _charges_text(sorted(trained_charges))
        if charges_model:
            consequence = ("its energy, forces and charges for this charge state are an extrapolation; add frames of "
                           "this charge state to the training data")
        else:
            consequence = ("a model without charges (charges=False) does not read Q: its energy and forces are those "
                           "of the trained charge state; for this charge state use a model trained with charges on it")
        warn_caller(f"{_prefix(where)}total charge {_charges_text([q])} e never occurred in this model's training "
                    f"data (trained on total charge {trained} e); {consequence}", PhysNetInputWarning)
        return
    if not charges_model and q != 0.0:
        warn_caller(
            f"{_prefix(where)}total charge {q:g} e given to a model without charges "
            "(charges=False): its energy and forces do not depend on the total charge (they are those of the charge "
            "state it was trained on); for charged species use a model trained with charges",
            PhysNetInputWarning)


def check_dataset_charges(total_charges, trained_charges: Optional[Iterable[float]], where: str = "") -> None:
    """Warn (:class:`PhysNetInputWarning`) when frames have total charges outside ``trained_charges``.

    ``total_charges`` (M,) e per frame; the warning names the charges and how many frames
    have them. ``trained_charges`` None (unknown) skips the check.
    """
    if trained_charges is None:
        return
    q = np.asarray(total_charges, dtype=np.float64).ravel()
    trained = np.asarray(list(trained_charges), dtype=np.float64)
    frames = np.nonzero((np.abs(q[:, None] - trained[None, :]) > CHARGE_MATCH_TOLERANCE).all(axis=1))[0]
    if frames.size:
        unseen = distinct_charges(q[frames])
        warn_caller(
            f"{_prefix(where)}total charge(s) {_charges_text(unseen)} e (in {len(frames)} of {len(q)} frames, first "
            f"frame {frames[0]}) never occurred in this model's training data (trained on total charge "
            f"{_charges_text(sorted(trained_charges))} e); its energies and forces there are an extrapolation",
            PhysNetInputWarning)


def _frame_formulas(atomic_numbers, num_atoms) -> np.ndarray:
    """(M,) Hill formulas of M frames (Z (M, n) padded, N (M,)), one :func:`formula` call per distinct row of Z."""
    z = np.asarray(atomic_numbers)
    real = np.where(np.arange(z.shape[1])[None, :] < np.asarray(num_atoms)[:, None], z, 0)
    rows, inverse = np.unique(real, axis=0, return_inverse=True)
    return np.array([formula(row) for row in rows], dtype=object)[inverse.reshape(-1)]


def charge_states(atomic_numbers, num_atoms, total_charges) -> dict[str, list[float]]:
    """{Hill formula: sorted distinct total charges (e)} of M frames: Z (M, n) padded, N (M,), Q (M,)."""
    names = _frame_formulas(atomic_numbers, num_atoms)
    charges = np.asarray(total_charges, np.float64).reshape(-1)
    return {name: distinct_charges(charges[names == name]) for name in dict.fromkeys(names)}


def check_dataset_charge_states(atomic_numbers, num_atoms, total_charges, trained_states: Optional[dict],
                                where: str = "") -> None:
    """Warn (:class:`PhysNetInputWarning`) for frames of a composition the model was trained on, but only at other
    total charges (the neutral formate radical from a model trained on the formate anion and on formic acid: each
    element and each charge occurred, the pair never); ``trained_states`` None (unknown) skips the check."""
    if not trained_states:
        return
    names = _frame_formulas(atomic_numbers, num_atoms)
    charges = np.asarray(total_charges, np.float64).reshape(-1)
    for name in dict.fromkeys(name for name in names if name in trained_states):
        trained = np.asarray(trained_states[name], np.float64)
        untrained = (np.abs(charges[:, None] - trained[None, :]) > CHARGE_MATCH_TOLERANCE).all(axis=1)
        frames = np.flatnonzero((names == name) & untrained)
        if not frames.size:
            continue
        warn_caller(
            f"{_prefix(where)}{name} occurred in this model's training data only at total charge "
            f"{_charges_text(trained_states[name])} e, not at {_charges_text(distinct_charges(charges[frames]))} e "
            f"({len(frames)} of {len(charges)} frame(s), first frame {frames[0]}): its energies and forces for this "
            "charge state are an extrapolation; add frames of it to the training data", PhysNetInputWarning)


BOND_RATIO_MAX = 1.5
"""Largest plausible median, over atoms, of (nearest-neighbour distance)/(sum of covalent radii): ~1.0 for
molecules in Å (bundled sets: 0.94–1.01), 1.89 for the same in bohr read as Å."""

BOND_RATIO_MIN = 0.6
"""Smallest plausible median of the same ratio: 0.1 for molecules in nm read as Å (a C–H bond of 0.109 "Å")."""

POSITION_UNIT_SLIPS = {"bohr": BOHR, "nm": 10.0, "pm": 0.01}
"""Å per unit of the lengths that positions read as Å are found in: a molecule in one of them sits 1/factor × its
covalent bond lengths from its neighbours (bohr 1.89×, nm 0.1×, pm 100×)."""


def position_unit_slip(median_ratio: float, tolerance: float = 1.3) -> Optional[tuple[str, float]]:
    """(unit, Å per unit) of :data:`POSITION_UNIT_SLIPS` that brings a median bond-length ratio
    (:func:`bond_length_ratios`) within a factor ``tolerance`` of 1, the nearest one; None when no unit does (or
    the ratio is 0, coincident atoms)."""
    if not median_ratio > 0:
        return None
    unit, factor = min(POSITION_UNIT_SLIPS.items(), key=lambda item: abs(np.log(median_ratio * item[1])))
    return (unit, factor) if abs(np.log(median_ratio * factor)) < np.log(tolerance) else None


def position_unit_question(median_ratio: float) -> str:
    """The end of a message about positions whose median bond-length ratio is ``median_ratio``: which unit they look
    to be in, and the factor to Å (:func:`position_unit_slip`), or only that they must be in Å."""
    slip = position_unit_slip(median_ratio)
    return "positions must be in Å" + (f": are they in {slip[0]} (multiply by {slip[1]:g})?" if slip else "")


def covalent_distance_ratios(atomic_numbers, positions, rows=None, cell=None) -> np.ndarray:
    """r_ij / (ρ_i + ρ_j) for the atoms i in ``rows`` and all atoms j, with ρ :data:`ase.data.covalent_radii`.

    Args:
      atomic_numbers: (n,) ints.  positions: (n, 3) Å.
      rows: indices of the atoms i (default all; the cost is ∝ len(rows) × n).
      cell: (3, 3) Å, vectors as rows, periodic along its non-zero rows: r_ij is then the minimum-image distance
        (:func:`ase.geometry.find_mic`), so unwrapped atoms meet their neighbours across the cell. None: a molecule.

    Returns:
      (len(rows), n) ratios, ~1 for a bond, ∞ where j = i.
    """
    from ase.data import covalent_radii
    from ase.geometry import find_mic

    z = np.asarray(atomic_numbers)
    r = np.asarray(positions, np.float64)
    rows = np.arange(z.shape[0]) if rows is None else np.asarray(rows)
    radii = covalent_radii[z]
    vectors = r[None] - r[rows, None]
    if cell is not None and np.any(cell):
        vectors = find_mic(vectors.reshape(-1, 3), cell, np.any(cell, axis=1))[0].reshape(vectors.shape)
    ratio = np.linalg.norm(vectors, axis=-1) / (radii[rows, None] + radii[None, :])
    ratio[np.arange(len(rows)), rows] = np.inf
    return ratio


RATIO_CHUNK_PAIRS = 1 << 22
"""Atom pairs :func:`bond_length_ratios` holds at once (~100 MB of (rows, n, 3) float64 vectors)."""


def bond_length_ratios(atomic_numbers, positions, rows=None, cell=None) -> np.ndarray:
    """Nearest-neighbour distance of each atom in ``rows`` over the sum of the two covalent radii: (len(rows),)
    ratios, ~1 for a bonded atom (the row minima of :func:`covalent_distance_ratios`, of the minimum images in a
    periodic ``cell``; n ≥ 2 atoms), in chunks of :data:`RATIO_CHUNK_PAIRS` pairs."""
    n = np.asarray(atomic_numbers).shape[0]
    rows = np.arange(n) if rows is None else np.asarray(rows)
    chunk = max(1, RATIO_CHUNK_PAIRS // n)
    return np.concatenate([covalent_distance_ratios(atomic_numbers, positions, rows[start:start + chunk], cell)
                           .min(axis=1) for start in range(0, len(rows), chunk)] or [np.zeros(0)])


BOND_RATIO_APART = 2.5
"""Median bond-length ratio above which the atoms are not a molecule in bohr but mostly apart from each other
(separate atoms, reported as such where it matters, e.g. as fragments by the harmonic analysis)."""


LENGTH_UNIT_SAMPLE = 1024
"""Atoms (evenly spaced by index) whose nearest neighbours :func:`stretched_bond_ratio` judges in a larger
structure, so that its work stays (sample × atoms) pairs."""


def stretched_bond_ratio(atomic_numbers, positions) -> Optional[float]:
    """The median of :func:`bond_length_ratios` when it lies in (:data:`BOND_RATIO_MAX`, :data:`BOND_RATIO_APART`]
    (a molecule stretched as by the bohr/Å factor 1.89), else None (also for fewer than 2 atoms); the median over
    :data:`LENGTH_UNIT_SAMPLE` atoms of a larger structure."""
    n = np.asarray(atomic_numbers).shape[0]
    if n < 2:
        return None
    rows = None if n <= LENGTH_UNIT_SAMPLE else np.linspace(0, n - 1, LENGTH_UNIT_SAMPLE).round().astype(int)
    median = float(np.median(bond_length_ratios(atomic_numbers, positions, rows)))
    return median if BOND_RATIO_MAX < median <= BOND_RATIO_APART else None


def check_length_unit(atomic_numbers, positions, where: str = "") -> Optional[float]:
    """Warn (:class:`~physnetjax.errors.LengthUnitWarning`) when a molecule looks stretched by the bohr/Å factor 1.89;
    returns :func:`stretched_bond_ratio` (None: not stretched).

    The statistic is the median over atoms of :func:`bond_length_ratios`; between
    :data:`BOND_RATIO_MAX` and :data:`BOND_RATIO_APART` the positions are most likely in
    bohr read as Å (1.89). A model evaluates such a stretched molecule without complaint,
    by extrapolation, and may even have a spurious minimum there. Non-bonded clusters
    (rare-gas dimers) fall in that range legitimately. Fewer than 2 atoms: nothing to check.
    """
    median = stretched_bond_ratio(atomic_numbers, positions)
    if median is not None:
        warn_caller(f"{_prefix(where)}atoms sit {median:.2f}× the covalent bond length from their nearest "
                    "neighbours (median over atoms; ~1.0 for a molecule in Å, 1.89 for bohr read as Å); "
                    f"{position_unit_question(median)}", LengthUnitWarning)
    return median


def validate_structure(
    atomic_numbers,
    positions,
    max_atomic_number: int,
    *,
    total_charge=0.0,
    cell=None,
    pbc=None,
    strict: bool = False,
    where: str = "",
    search_contacts: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Check one structure; returns (Z int32 (n,), R float (n, 3)).

    Args:
      atomic_numbers: (n,) integers. positions: (n, 3) Å.
      max_atomic_number: the model's largest supported Z.
      total_charge: Q in e (checked finite and ≤ ΣZ).
      cell, pbc: (3, 3) Å (rows) and (3,) bools; ``pbc`` None means isolated.
      strict: close contacts below :data:`MIN_DISTANCE_WARNING` raise instead of warning.
      where: prefix of every message (e.g. a frame name).
      search_contacts: False leaves the interatomic distances to the caller, which gives
        :func:`check_distances` the close contacts of the neighbor list it builds anyway.

    Raises:
      PhysNetInputError: the first problem found, as described in the module docstring.

    Warns:
      PhysNetInputWarning: close contacts (what lies outside the training data is checked by
        :meth:`physnetjax.training_record.TrainingRecord.check_structure`).
    """
    z = check_atomic_numbers(atomic_numbers, max_atomic_number, where)
    r = check_positions(positions, z.shape[0], where)
    check_total_charge(total_charge, z, where)
    cell, pbc = check_cell(cell, pbc, where)
    if search_contacts:
        check_distances(r, cell, pbc, strict=strict, where=where, atomic_numbers=z)
    return z, r
