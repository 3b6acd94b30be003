"""Plausibility of labels before training: force scale, forces against energies (sign and units), dipole scale.

All checks warn (:class:`~physnetjax.validation.PhysNetInputWarning`) with the
evidence and the fix (the reading option that fixes the data, or what to change in the
file for a program without it: :mod:`physnetjax.data.remedies`); none changes anything.

1. **Force scale.** The RMS force component of molecules sampled at chemical
   temperatures is ~0.3–3 eV/Å (the bundled 500 K ethanol set: 0.98 eV/Å). Beyond
   :data:`FORCE_RMS_RANGE` the units are suspect: kcal/mol/Å read as eV/Å are 23×
   too large, hartree/bohr 51× too small (0.019 eV/Å for the bundled set; an RMS
   below 0.05 eV/Å in eV/Å means frames within ~1 K of a minimum). The message names
   every slip, either way round, that brings the RMS into 0.3–3 eV/Å
   (:func:`force_scale_slips`): the data alone cannot tell eV/Å read with
   ``--energy-unit kcal/mol`` from hartree/bohr read as eV/Å.
2. **Energy scale.** After the best per-element reference energies (least squares
   E ≈ Σ_Z n_Z e_Z), the residual RMS per atom of molecular data in eV is
   ~0.01–0.3 eV/atom (bundled set: 0.015); above :data:`ENERGY_RESIDUAL_MAX`
   eV/atom the energies are probably in kcal/mol or kJ/mol (23× / 96× larger).
3. **Forces against energies.** For two nearby frames a, b of the same molecule
   the trapezoid rule gives, to third order in ΔR = R_b − R_a,

       E_b − E_a ≈ w = −½ (F_a + F_b) · ΔR          (F = −∂E/∂R),

   with an error of order |ΔR|³ (zero in a harmonic well). Each frame of a random
   subset is paired with its nearest other frame of the same molecule (same
   atoms in the same order, the file's own coordinates, no alignment) when their
   RMS displacement per atom d is at most :data:`MAX_PAIR_RMSD` Å. The slope s of
   ΔE on w is fitted by weighted least squares, weights 1/max(d, d₀)⁴ with d₀ =
   :data:`PAIR_RMSD_FLOOR` (the closest pairs carry the least trapezoid error; below
   d₀ label noise dominates). s is +1 for consistent labels, −1 when the forces
   are +∂E/∂R (fix: ``--force-sign -1``), and the unit ratio when energies and forces
   are in different units: 1.89 for forces per bohr read as per Å, 23.06 or
   1/23.06 for kcal/mol vs eV, 27.2 or 1/27.2 for hartree vs eV (fix:
   ``--energy-unit`` / ``--force-unit``). A mismatch is reported when the weighted
   correlation of ΔE with w is at least :data:`MIN_CORRELATION`, the fit rests on at
   least :data:`MIN_EFFECTIVE_PAIRS` effective pairs, and s ± :data:`SLOPE_SIGMAS`
   standard errors lies outside [1/:data:`SLOPE_TOLERANCE`, :data:`SLOPE_TOLERANCE`].
   Measured on the reference GFN2-xTB (ethanol, methanol, CO2: 500 K MD and
   normal-mode samples) and DFT (DNA bases and base pairs) sets, whole and in
   random 30–100 % subsets of their frames: correct labels gave s = 0.94–1.11 on
   the whole sets and 0.78–1.25 on subsets (where few pairs widen the error), and
   no report in 811 judged subsets; forces scaled by 1.5 or 1/1.5 were reported in
   90 % and 95 % of them, forces in eV/bohr in 98 % (the rest fell within two
   standard errors of the tolerance). Without close pairs (frames far apart, or
   of different molecules) the check abstains and only the sign is checked:
4. **Force sign from the virial.** For a bound molecule sampled at a temperature T
   (MD or Boltzmann sampling), equipartition over the coordinates relative to the
   centre gives ⟨Σ_i (R_i − R̄)·∂E/∂R_i⟩ = 3(N − 1) k_B T > 0, so the virial
   W = Σ_i (R_i − R̄)·F_i averages −3(N − 1) k_B T (bundled set at 500 K: −1.00 eV,
   expected −1.03): the forces pull the atoms together on average. A mean W above
   zero by :data:`VIRIAL_MIN_SIGMAS` standard errors means forces stored as +∂E/∂R
   (fix: ``--force-sign -1``).
5. **Dipole scale.** The fixed atomic charges that best reproduce a molecule's
   dipole labels (:mod:`physnetjax.data.dipole_charges`) stay below about 1 e for
   molecules (reference sets: ≤ 0.84 e); beyond 2 e (by two standard errors) the
   dipoles are probably in Debye read as e·Å, 4.80× too large (fix:
   ``--dipole-unit debye``).
6. **Stress against energy.** Between two nearby stress-labelled cells of the same atoms
   (:func:`energy_stress_slope`), the energy change left after the forces' work on the
   non-affine displacement is the strain's work ½(V_a σ_a + V_b σ_b):ε. Its slope on the
   labels is 1 for stress in eV/Å³ with ASE's sign (EMT copper along a strain ramp: 0.9996,
   correlation 1.000; rattled, strained cells: 1.01–1.21 ± 0.12–0.26, correlation
   0.93–0.95), 1/160 for GPa and 1/1602 for kbar read as eV/Å³ and −1 for a pressure
   tensor (VASP's sign); judged as the energy-force slope is (:func:`slope_mismatch`), it
   abstains on cells too far apart or too little strained for a clear slope.
"""

from __future__ import annotations

import logging
import math
from typing import Iterable, Iterator, NamedTuple, Optional

import numpy as np

from physnetjax.data.dipole_charges import implausible_charges
from physnetjax.data.remedies import ONE_FILE_OF_SEVERAL, label_remedies, remedies_in_effect
from physnetjax.errors import warn_caller
from physnetjax.units import DIPOLE_UNITS, ENERGY_UNITS, LENGTH_UNITS, distinct_units, energy_factor, force_factor
from physnetjax.validation import PhysNetInputWarning

logger = logging.getLogger(__name__)

FORCE_RMS_RANGE = (0.05, 10.0)
"""eV/Å: plausible RMS force component of a molecular data set."""

TYPICAL_FORCE_RMS = (0.3, 3.0)
"""eV/Å: RMS force component of molecules sampled at chemical temperatures (the bundled 500 K ethanol set: 0.98)."""

ENERGY_RESIDUAL_MAX = 1.0
"""eV/atom: largest plausible RMS per atom of E about its per-element linear fit."""

SLOPE_TOLERANCE = 1.2
"""Slopes within [1/1.2, 1.2] (after :data:`SLOPE_SIGMAS` standard errors) count as consistent labels."""

SLOPE_SIGMAS = 2.0
"""Standard errors by which the slope must lie beyond the tolerance to be reported."""

MAX_PAIR_RMSD = 0.15
"""Å: largest RMS displacement per atom between two frames used as a pair (DNA-base DFT frames up to 0.3 Å
apart bias the unweighted slope to 0.6: the trapezoid error grows as the cube of the displacement)."""

PAIR_RMSD_FLOOR = 0.05
"""Å: closer pairs are weighted as if this far apart (their w is so small that label noise would dominate)."""

MIN_EFFECTIVE_PAIRS = 2.0
"""Least effective number of pairs (Kish: (Σ u)² / Σ u² of the weights u = w²/d⁴) for a slope."""

MIN_CORRELATION = 0.9
"""Least |weighted correlation| of ΔE with w for a slope to be judged (correct data: 0.95–1.00)."""

UNRELATED_MAX_CORRELATION = 0.5
"""Below this |weighted correlation| of ΔE with w, over at least :data:`UNRELATED_MIN_EFFECTIVE_PAIRS`, energies and
forces do not belong to the same frames and atoms (300 bundled ethanol frames: 0.99 as they are; 0.10 with the
energies shifted by one frame, about 0 with energies or forces shuffled or two atoms' force rows swapped)."""

UNRELATED_MIN_EFFECTIVE_PAIRS = 8.0
"""Least effective number of pairs for :data:`UNRELATED_MAX_CORRELATION` to be judged."""
VIRIAL_MIN_SIGMAS = 3.0
"""Standard errors by which the mean virial must exceed 0 to report flipped forces (check 4)."""
MAX_QUERY_FRAMES = 500
"""Frames of one molecule (a random subset beyond that) paired with their nearest frame among all its frames:
the search costs O(500 · frames · atoms) (0.7 s for 10⁵ frames of ethanol)."""

_CANDIDATE_BLOCK = 8192
_SAME_FRAME_RMSD = 1e-4
"""Å: frames closer than this are copies of one frame, not a pair."""


ATOMIC_FORCE_UNIT = ("hartree", "bohr")
"""(energy, length) of hartree/bohr, the one force unit besides energy units per Å that slips are named for: the
atomic unit, as quantum-chemistry codes write forces."""


def _force_units() -> list[tuple[str, str]]:
    """(energy, length) of the force units slips are named for: each energy unit of
    :data:`~physnetjax.units.ENERGY_UNITS` per Å (eV/Å first), then :data:`ATOMIC_FORCE_UNIT`."""
    angstrom = next(iter(distinct_units(LENGTH_UNITS)))
    return [(energy, angstrom) for energy in distinct_units(ENERGY_UNITS)] + [ATOMIC_FORCE_UNIT]


def quantity_slips() -> dict[str, tuple[tuple[str, float], ...]]:
    """Quantity → (slip, c) of the common unit slips of its labels, from the unit tables of :mod:`physnetjax.units`.

    Labels in a unit taken as the internal one (eV, eV/Å, e·Å) read 1/c times their right values, so c converts
    what was read into the right values (kcal/mol read as eV: c = 0.0434, the labels read 23.06×). Named: each
    energy unit read as eV; each force unit of :func:`_force_units` read as eV/Å; eV per each other length unit
    read as eV/Å and the reverse; each dipole unit read as e·Å and the reverse. Energy units are named one way
    only: eV read as hartree (labels 27.2×) would lie within :data:`SLIP_TOLERANCE` of kcal/mol read as eV (23.06×).
    """
    ev, *energies = distinct_units(ENERGY_UNITS)
    angstrom, *lengths = distinct_units(LENGTH_UNITS)
    e_angstrom, *dipoles = distinct_units(DIPOLE_UNITS)
    force = f"{ev}/{angstrom}"
    forces = [(f"{energy}/{length} read as {force}", force_factor(energy, length))
              for energy, length in _force_units() if (energy, length) != (ev, angstrom)]
    for length in lengths:
        forces += [(f"{ev}/{length} read as {force}", 1.0 / LENGTH_UNITS[length]),
                   (f"{force} read as {ev}/{length}", LENGTH_UNITS[length])]
    return {
        "energies": tuple((f"{unit} read as {ev}", ENERGY_UNITS[unit]) for unit in energies),
        "forces": tuple(forces),
        "dipoles": tuple([(f"{unit} read as {e_angstrom}", DIPOLE_UNITS[unit]) for unit in dipoles]
                         + [(f"{e_angstrom} read as {unit}", 1.0 / DIPOLE_UNITS[unit]) for unit in dipoles]),
    }


QUANTITY_SLIPS = quantity_slips()
"""Quantity (``"energies"``, ``"forces"``, ``"dipoles"``) → (slip, c) of :func:`quantity_slips`, judged against a
model's predictions; the energy/force mix-ups within one data set are :data:`ENERGY_FORCE_SLIPS`."""

SLIP_TOLERANCE = 1.25
"""A measured ratio names the slip whose ratio is nearest to it, if within this factor."""


def nearest_slip(ratio: float, slips: list[tuple[str, float]]) -> Optional[str]:
    """The name of (name, expected ratio) in ``slips`` nearest to ``ratio`` on a log scale, within
    :data:`SLIP_TOLERANCE`; None for none or a ratio ≤ 0."""
    if not ratio > 0:
        return None
    distance, name = min((abs(math.log(ratio / expected)), name) for name, expected in slips)
    return name if distance < math.log(SLIP_TOLERANCE) else None


def read_ratios(quantity: str) -> list[tuple[str, float]]:
    """(slip, 1/c) for the slips of :data:`QUANTITY_SLIPS` ``[quantity]``: how many times their right values labels
    read."""
    return [(name, 1.0 / c) for name, c in QUANTITY_SLIPS[quantity]]


def listed_ratios(slips: list[tuple[str, float]]) -> str:
    """``23.06 for kcal/mol read as eV, ...``: each slip's ratio, as text."""
    return ", ".join(f"{expected:.4g} for {name}" for name, expected in slips)



class SlopeFit(NamedTuple):
    """Weighted fit of ΔE on w = −½(F_a + F_b)·ΔR over pairs of nearby frames (check 3 of the module docstring)."""

    slope: float
    """s in ΔE ≈ s · w (1 for F = −dE/dR in the same units)."""
    correlation: float
    """Weighted correlation of ΔE with w."""
    pairs: int
    effective_pairs: float
    error: float
    """Standard error of the slope."""


def nearest_frame_pairs(positions: np.ndarray, max_rmsd: float = MAX_PAIR_RMSD, max_queries: int = MAX_QUERY_FRAMES,
                        rng: Optional[np.random.Generator] = None) -> tuple[np.ndarray, np.ndarray]:
    """((P, 2) index pairs i < j, (P,) RMS displacements per atom in Å) of query frames and their nearest frames.

    ``positions`` (G, n, 3) of G frames of one molecule (same atoms in the same order), compared as given (no
    alignment). Each of ``max_queries`` random frames (all when G is smaller) is paired with its nearest other
    frame if that is within ``max_rmsd`` Å RMS per atom; copies of the query frame (closer than 1e-4 Å) are
    skipped. Cost O(max_queries · G · n).
    """
    g, n = positions.shape[:2]
    if g < 2:
        return np.zeros((0, 2), np.int64), np.zeros(0)
    rng = np.random.default_rng(0) if rng is None else rng
    positions = np.asarray(positions, np.float64)
    flat = (positions - positions.mean(axis=(0, 1))).reshape(g, -1)  # centred: no cancellation in the distances
    queries = np.arange(g) if g <= max_queries else np.sort(rng.choice(g, max_queries, replace=False))
    squares = np.einsum("ij,ij->i", flat, flat)
    best = np.full(len(queries), np.inf)
    nearest = np.zeros(len(queries), np.int64)
    for start in range(0, g, _CANDIDATE_BLOCK):
        block = slice(start, min(start + _CANDIDATE_BLOCK, g))
        dist2 = squares[queries, None] + squares[None, block] - 2.0 * flat[queries] @ flat[block].T
        dist2[dist2 <= n * _SAME_FRAME_RMSD**2] = np.inf
        column = np.argmin(dist2, axis=1)
        value = dist2[np.arange(len(queries)), column]
        better = value < best
        best[better], nearest[better] = value[better], column[better] + start
    close = best <= n * max_rmsd**2
    pairs = np.sort(np.stack([queries[close], nearest[close]], axis=1), axis=1)
    pairs = np.unique(pairs, axis=0).reshape(-1, 2)
    rmsd = np.sqrt(((positions[pairs[:, 1]] - positions[pairs[:, 0]]) ** 2).sum(axis=(1, 2)) / n)
    return pairs, rmsd


def frame_groups(data, frames: np.ndarray, by_cell: bool) -> list[np.ndarray]:
    """``frames`` split into groups of identical atomic numbers and total charge (and cell, ``by_cell``), in order of
    their first byte string (each frame's numbers as one byte string: 20× faster than ``np.unique(axis=0)``)."""
    columns = [data.Z[frames].astype(np.int64), np.rint(np.asarray(data.Q[frames], np.float64) * 1000.0)
               .astype(np.int64)[:, None]]
    if by_cell:
        columns.append(np.rint(data.cell[frames].reshape(-1, 9) * 1e6).astype(np.int64))
    numbers = np.ascontiguousarray(np.concatenate(columns, axis=1))
    rows = numbers.view(np.dtype((np.void, numbers.dtype.itemsize * numbers.shape[1]))).reshape(-1)
    group = np.unique(rows, return_inverse=True)[1].reshape(-1)
    return [frames[group == g] for g in np.unique(group)]


def nearby_frames(data, usable: np.ndarray, by_cell: bool, seed: int) -> Iterator[tuple]:
    """(a, b, d, n) per group of :func:`frame_groups` among the ``usable`` frames (none when fewer than 2): the frame
    indices a, b (P,) of the pairs of :func:`nearest_frame_pairs` in the group, their RMS displacements d (P,) Å and
    the group's atom count n."""
    if len(usable) < 2:
        return
    rng = np.random.default_rng(seed)
    for frames in frame_groups(data, usable, by_cell):
        n = int(data.N[frames[0]])
        pairs, distance = nearest_frame_pairs(data.R[frames, :n], rng=rng)
        yield frames[pairs[:, 0]], frames[pairs[:, 1]], distance, n


def energy_force_slope(data, seed: int = 0) -> Optional[SlopeFit]:
    """Fit E_b − E_a ≈ s · [−½(F_a + F_b)·(R_b − R_a)] over pairs of nearby frames; None (abstain) without them.

    Uses frames with both energy and force labels, grouped by identical atomic numbers, total charge (an anion
    and the neutral radical at one geometry differ by an ionisation energy, not by work) and cell (straining a
    cell does work that the forces do not hold); pairs as in
    :func:`nearest_frame_pairs`, weighted by 1/max(d, :data:`PAIR_RMSD_FLOOR`)⁴ in their RMS displacement d.
    Returns None with fewer than :data:`MIN_EFFECTIVE_PAIRS` effective pairs or no spread in ΔE.
    """
    rmsd, work, change = [], [], []
    for a, b, distance, n in nearby_frames(data, np.nonzero(data.has_E & data.has_F)[0], True, seed):
        displacement = np.asarray(data.R[b, :n], np.float64) - data.R[a, :n]
        work.append(-0.5 * ((data.F[a, :n] + data.F[b, :n]) * displacement).sum(axis=(1, 2)))
        change.append(np.asarray(data.E[b], np.float64) - data.E[a])
        rmsd.append(distance)
    if not rmsd:
        return None
    return weighted_slope(np.concatenate(rmsd), np.concatenate(work), np.concatenate(change))


def weighted_slope(rmsd: np.ndarray, w: np.ndarray, de: np.ndarray) -> Optional[SlopeFit]:
    """The slope s of ΔE ≈ s · w over pairs of frames (P,) RMS displacement ``rmsd`` Å apart, each weighted by
    w² / max(rmsd, :data:`PAIR_RMSD_FLOOR`)⁴; None (abstain) with fewer than :data:`MIN_EFFECTIVE_PAIRS` effective
    pairs or no spread in ΔE."""
    v = np.maximum(rmsd, PAIR_RMSD_FLOOR) ** -4.0
    u = v * w * w
    if not u.sum() or not np.any(de):
        return None
    effective = float(u.sum() ** 2 / (u * u).sum())
    if effective < MIN_EFFECTIVE_PAIRS:
        return None
    slope = float((v * w * de).sum() / u.sum())
    error = float(np.sqrt((v * (de - slope * w) ** 2).sum() / u.sum() / (effective - 1.0)))
    mean_w, mean_de = (v * w).sum() / v.sum(), (v * de).sum() / v.sum()
    spread = np.sqrt((v * (w - mean_w) ** 2).sum() * (v * (de - mean_de) ** 2).sum())
    correlation = float((v * (w - mean_w) * (de - mean_de)).sum() / spread) if spread else 0.0
    return SlopeFit(slope, correlation, len(w), effective, error)


def energy_stress_slope(data, seed: int = 0) -> Optional[SlopeFit]:
    """Fit E_b − E_a + ½(F_a + F_b)·u ≈ s · ½(V_a σ_a + V_b σ_b):ε over pairs of nearby stress-labelled cells (check 6
    of the module docstring); None (abstain) without pairs that differ in strain.

    With cells h as rows, ε = h_a⁻¹ h_b − I takes cell a to cell b, atoms moving with it to r_a (I + ε), and
    u = r_b − r_a (I + ε) is what is left of their displacement: E changes by V σ:ε under the strain
    (σ = (1/V) ∂E/∂ε) and by −F·u under the rest (trapezoid rule over the pair). s = 1 for stress in eV/Å³ with
    ASE's sign; 1/160.2 for GPa read as eV/Å³, 1/1602 for kbar, −1 for a pressure tensor (VASP's sign). Frames are
    grouped as in :func:`energy_force_slope` but across cells, and paired by their Cartesian positions.
    """
    rmsd, work, residual = [], [], []
    for frames_a, frames_b, distance, n in nearby_frames(data, np.nonzero(data.has_E & data.has_F & data.has_S)[0],
                                                         False, seed):
        for a, b, d in zip(frames_a, frames_b, distance):
            h_a, h_b = data.cell[a], data.cell[b]
            strain = np.linalg.solve(h_a, h_b) - np.eye(3)
            rest = data.R[b, :n] - data.R[a, :n] @ (np.eye(3) + strain)
            virials = [abs(np.linalg.det(h)) * data.S[k] for h, k in ((h_a, a), (h_b, b))]
            work.append(0.5 * float(np.sum((virials[0] + virials[1]) * strain)))
            residual.append(float(data.E[b] - data.E[a]) + 0.5 * float(np.sum((data.F[a, :n] + data.F[b, :n]) * rest)))
            rmsd.append(d)
    if not work:
        return None
    return weighted_slope(np.asarray(rmsd), np.asarray(work), np.asarray(residual))


STRESS_SLIPS = ((1.0 / 160.21766, "stress in GPa read as eV/Å³ (multiply by 6.2415e-3)"),
                (1.0 / 1602.1766, "stress in kbar read as eV/Å³ (multiply by 6.2415e-4)"),
                (-1.0, "a pressure tensor, the stress with the opposite sign (as VASP writes it: negate it)"),
                (-1.0 / 1602.1766, "a pressure tensor in kbar, as VASP writes it (multiply by -6.2415e-4)"),
                (-1.0 / 160.21766, "a pressure tensor in GPa (multiply by -6.2415e-3)"))
"""(s, words): the slope of :func:`energy_stress_slope` for the common stress-label slips."""


def slope_mismatch(fit: Optional[SlopeFit]) -> bool:
    """Whether a fit shows energies and forces in different units or signs (check 3 of the module docstring)."""
    if fit is None or abs(fit.correlation) < MIN_CORRELATION:
        return False
    margin = SLOPE_SIGMAS * fit.error
    return fit.slope - margin > SLOPE_TOLERANCE or fit.slope + margin < 1.0 / SLOPE_TOLERANCE


def energy_force_slips() -> tuple[tuple[float, str], ...]:
    """(s, words) of the common energy/force unit mix-ups of one data set, from the unit tables of
    :mod:`physnetjax.units`: the slope s of ΔE on the work −½(F_a + F_b)·ΔR (:func:`energy_force_slope`) when
    both are read as eV and eV/Å.

    Named: forces per each other length unit read as per Å (s = 1.89 per bohr) and the reverse, or positions in
    that unit; then energies in each energy unit with forces in each other force unit of :func:`_force_units`
    (s = 23.06 for energies in kcal/mol with forces in eV/Å).
    """
    ev = next(iter(distinct_units(ENERGY_UNITS)))
    angstrom, *lengths = distinct_units(LENGTH_UNITS)
    slips = []
    for length in lengths:
        slips += [(1.0 / LENGTH_UNITS[length], f"forces per {length} read as per {angstrom} (e.g. {ev}/{length}, "
                   f"{ATOMIC_FORCE_UNIT[0]}/{length})"),
                  (LENGTH_UNITS[length], f"forces per {angstrom} read as per {length}, or positions in {length}")]
    for energy in distinct_units(ENERGY_UNITS):
        slips += [(force_factor(other, length) / energy_factor(energy),
                   f"energies in {energy} with forces in {other}/{length}")
                  for other, length in _force_units() if other != energy]
    return tuple(slips)


ENERGY_FORCE_SLIPS = energy_force_slips()
"""(s, words) of :func:`energy_force_slips`, the energy/force unit mix-ups :func:`likely_unit_slip` names
(per-quantity slips against a model's predictions are :data:`QUANTITY_SLIPS`)."""


def likely_unit_slip(slope: float, error: float = 0.0, tolerance: float = 1.05) -> Optional[str]:
    """Words for the common unit mix-ups whose ratio of units matches ``slope`` (± 2 ``error``, ± ``tolerance``×).

    Energies in kcal/mol with forces in eV/Å give s = 23.06 (ΔE in kcal/mol against the work in eV); see
    :func:`energy_force_slope`. Several matches are joined by "or"; None when none matches or the slope is not
    positive.
    """
    if slope <= 0:
        return None
    reach = np.log(tolerance) + SLOPE_SIGMAS * error / slope
    matches = [words for ratio, words in ENERGY_FORCE_SLIPS if abs(np.log(slope / ratio)) <= reach]
    return ", or ".join(matches) or None


def per_atom_energy_count(data, fit: SlopeFit, tolerance: float = 1.05) -> Optional[int]:
    """N when every frame with an energy has N atoms and the slope ``fit`` is 1/N (± 2 errors, ± ``tolerance``×): the
    energies are per atom (E/N), which within one molecule scales every energy difference by 1/N. None otherwise
    (several atom counts: the frames' slopes differ)."""
    counts = np.unique(data.N[data.has_E])
    if counts.size != 1 or fit.slope <= 0:
        return None
    atoms = int(counts[0])
    reach = np.log(tolerance) + SLOPE_SIGMAS * fit.error / fit.slope
    return atoms if atoms > 1 and abs(np.log(fit.slope * atoms)) <= reach else None


def force_virial(data) -> Optional[tuple[float, float, int]]:
    """(mean, standard error, frames) of W = Σ_i (R_i − R̄)·F_i in eV over frames with forces (None: < 2 frames).

    R̄ is the mean position of the frame's atoms; W < 0 on average for F = −∂E/∂R
    of thermally sampled molecules (check 4 of the module docstring). Periodic frames are left out: in a cell the
    sum runs over wrapped positions and holds the pressure's virial (EMT copper at 0 to ±3 % strain, correct
    forces: W = +53 to +56 eV, which read as gradients).
    """
    frames = np.nonzero(data.has_F & ~data.periodic)[0]
    if len(frames) < 2:
        return None
    real = (data.Z[frames] > 0)[..., None]
    centre = (data.R[frames] * real).sum(axis=1) / data.N[frames, None]
    virial = ((data.R[frames] - centre[:, None]) * data.F[frames] * real).sum(axis=(1, 2))
    return float(virial.mean()), float(virial.std(ddof=1) / np.sqrt(len(frames))), len(frames)


def energy_residual_per_atom(data) -> Optional[float]:
    """RMS over frames of (E − Σ_Z n_Z e_Z − e_Q)/N in eV/atom with e_Z and, for data of several total charges Q, an
    offset e_Q per charge (ionisation energies and electron affinities, eV per ion, not per atom) fitted by least
    squares (None: < 2 frames)."""
    frames = np.nonzero(data.has_E)[0]
    if len(frames) < 2:
        return None
    z = data.Z[frames]
    elements = np.unique(z[z > 0])
    counts = (z[:, :, None] == elements[None, None, :]).sum(axis=1).astype(np.float64)
    charges = np.rint(np.asarray(data.Q[frames], np.float64) * 1000.0)
    states = np.unique(charges)
    if len(states) > 1:
        counts = np.column_stack([counts, (charges[:, None] == states[None, :]).astype(np.float64)])
    coefficients, *_ = np.linalg.lstsq(counts, data.E[frames], rcond=None)
    residual = (data.E[frames] - counts @ coefficients) / data.N[frames]
    return float(np.sqrt(np.mean(residual**2)))


def force_scale_slips(rms: float) -> str:
    """The unit slips of :data:`QUANTITY_SLIPS` ``["forces"]``, either way round, that would bring an RMS force
    component of ``rms`` eV/Å (as read, after the units given) into :data:`TYPICAL_FORCE_RMS`, as text.

    The data as read cannot tell which way a unit was slipped: eV/Å data read with ``--energy-unit kcal/mol``
    look like hartree/bohr data read as eV/Å (both too small), so both directions are named with the RMS each
    would give, the one nearest 1 eV/Å first.
    """
    low, high = TYPICAL_FORCE_RMS
    factors = {}
    for name, c in QUANTITY_SLIPS["forces"]:
        given, meant = name.split(" read as ")
        for factor, words in ((c, name), (1.0 / c, f"{meant} read as {given}")):
            if low <= rms * factor <= high:
                factors[words] = factor
    ranked = sorted(factors.items(), key=lambda item: abs(math.log(rms * item[1])))  # nearest 1 eV/Å first
    return "; ".join(f"{words} (×{factor:.3g}: RMS {rms * factor:.2g} eV/Å)" for words, factor in ranked) or (
        "no common unit slip brings it into the typical range")


def label_sanity_findings(data, where: str = "data") -> list[tuple[str, str]]:
    """The findings of :func:`check_label_sanity` as (quantities concerned, message) pairs, none issued.

    The quantities are ``"forces"``, ``"energies"``, ``"energies forces"``, ``"stresses"``, ``"dipoles"``; the forces'
    sign judged from the virial alone (a heuristic for thermally sampled molecules) is ``"forces sign"``.
    """
    files = frames_by_file(data.sources)
    findings = label_findings(data, where)
    if len(files) > 1:
        with remedies_in_effect(ONE_FILE_OF_SEVERAL):
            per_file = [label_findings(data.subset(frames), path) for path, frames in files.items()]
        kinds = [{quantities for quantities, _ in file_findings} for file_findings in per_file]
        everywhere = set.intersection(*kinds) & {quantities for quantities, _ in findings}
        anywhere = {word for quantities in set.union(*kinds) for word in quantities.split()}
        findings = ([(quantities, message) for file_findings in per_file for quantities, message in file_findings
                     if quantities not in everywhere]
                    + [(quantities, message) for quantities, message in findings if quantities in everywhere]
                    + [(quantities, message + " (no file shows this alone: do the files differ in units, reference "
                        "method or energy zero?)") for quantities, message in findings
                       if not set(quantities.split()) & anywhere])
    return findings


def check_label_sanity(data, where: str = "data", skip: Iterable[str] = ()) -> list[str]:
    """Warn about an implausible force scale and about forces that disagree with the energies.

    Data read from several files is checked file by file as well as pooled: a file whose labels are in other units
    or of the other sign than the rest is named, with a fix for that file alone (the reading options apply to every
    file: :data:`~physnetjax.data.remedies.ONE_FILE_OF_SEVERAL`); pooled, its frames only blurred the rest (forces of
    one file stored as gradients went unnoticed), or gave advice that would convert every file. A finding about the
    same quantities in every file and in the pool is reported once, pooled, with the usual fix; a pooled one about
    quantities that no file shows alone is reported as a difference between the files
    (:func:`label_sanity_findings`).

    ``skip``: quantities (``"forces"``, ``"energies"``, or both in one string) already judged otherwise,
    e.g. against a model's predictions (:func:`physnetjax.eval.evaluate.label_scale_findings`): a finding
    about them is left out, so that one problem gives one message. Returns the warning messages (also issued as
    :class:`PhysNetInputWarning`).
    """
    skipped = {word for quantities in skip for word in quantities.split()}
    messages = [message for quantities, message in label_sanity_findings(data, where)
                if not set(quantities.split()) & skipped]
    for message in messages:
        warn_caller(message, PhysNetInputWarning)
    return messages


def frames_by_file(sources) -> dict[str, np.ndarray]:
    """File → indices of its frames, in order of first appearance, from ``Dataset.sources`` ("file[frame]")."""
    files = np.array([str(source).rsplit("[", 1)[0] for source in sources])
    names, first = np.unique(files, return_index=True)
    return {str(name): np.nonzero(files == name)[0] for name in names[np.argsort(first)]}


def label_findings(data, where: str) -> list[tuple[str, str]]:
    """The findings of :func:`check_label_sanity` for ``data`` as one pool: (quantities concerned, message) each."""
    findings = []  # (quantities concerned, message)
    remedies = label_remedies()
    forces = data.F[data.has_F]
    real = (data.Z[data.has_F] > 0)
    if real.any():
        rms = float(np.sqrt(np.mean(forces[real] ** 2)))
        low, high = FORCE_RMS_RANGE
        if rms > high or rms < low:
            size = ("large for molecules (typical 0.3–3)" if rms > high else
                    "small for molecules (typical 0.3–3; below 0.05 only within ~1 K of a minimum)")
            findings.append(("forces",
                f"{where}: RMS force component {rms:.3g} eV/Å is implausibly {size} in the units given; unit "
                f"slips that would explain it: {force_scale_slips(rms)}: {remedies.units}"))
    spread = energy_residual_per_atom(data)
    if spread is not None and spread > ENERGY_RESIDUAL_MAX:
        findings.append(("energies",
            f"{where}: energies scatter by {spread:.3g} eV/atom (RMS about their per-element fit; typical 0.01–0.3 "
            f"eV/atom for molecules); kcal/mol or kJ/mol read as eV are 23× / 96× too large: {remedies.energy_unit}"))
    fit = energy_force_slope(data)
    if fit is None and not (data.has_E.any() and data.has_F.any()):
        logger.info("%s: no %s labels: forces are not checked against energies", where,
                    "force" if data.has_E.any() else "energy")
    elif fit is None:
        logger.info("%s: too few nearby frames to check forces against energies", where)
    else:
        evidence = (f"over {fit.pairs} pairs of nearby frames ({fit.effective_pairs:.3g} effective), E_b − E_a = "
                    f"s · [−½(F_a + F_b)·(R_b − R_a)] fits with s = {fit.slope:.3g} ± {fit.error:.2g} (correlation "
                    f"{fit.correlation:.2f}; s = 1 for F = −dE/dR in the same units)")
        if slope_mismatch(fit) and fit.slope < 0:
            findings.append(("forces", f"{where}: the forces have the opposite sign of −dE/dR: {evidence}; if the "
                             f"file stores +dE/dR (gradients), {remedies.force_sign}"))
        elif slope_mismatch(fit) and (atoms := per_atom_energy_count(data, fit)) is not None:
            slip = ", or ".join(words for ratio, words in ENERGY_FORCE_SLIPS  # 1/10 is also forces per nm as per Å
                                if abs(np.log(ratio * atoms)) < np.log(1.02))
            findings.append(("energies", f"{where}: the energies look like energies per atom: energy differences are "
                             f"1/{atoms} of the work of the forces, and every frame has {atoms} atoms: {evidence}; "
                             "store each frame's total energy (E × N)"
                             + (f" (or, as for {slip}: {remedies.units})" if slip else "")))
        elif slope_mismatch(fit):
            slip = likely_unit_slip(fit.slope, fit.error)
            findings.append(("energies forces", f"{where}: energies and forces do not match in scale"
                             + (f", as for {slip}" if slip else "") + f": {evidence}; {remedies.units}"))
        elif (abs(fit.correlation) < UNRELATED_MAX_CORRELATION
              and fit.effective_pairs >= UNRELATED_MIN_EFFECTIVE_PAIRS):
            findings.append(("energies forces", f"{where}: the energies do not follow the forces: {evidence}; for "
                             "labels of the same frames and atoms the work of the forces between nearby frames is "
                             "their energy difference (correlation near 1): are energies or forces shifted, shuffled "
                             "or assigned to other frames or atoms?"))
        elif abs(fit.correlation) >= MIN_CORRELATION:
            logger.info("%s: forces consistent with energies: %s", where, evidence)
        else:
            logger.info("%s: forces not judged against energies, too weakly correlated: %s", where, evidence)
    sign_settled = (fit is not None and abs(fit.correlation) >= MIN_CORRELATION
                    and abs(fit.slope) > SLOPE_SIGMAS * fit.error)
    virial = None if sign_settled else force_virial(data)
    if virial is not None and virial[0] > VIRIAL_MIN_SIGMAS * virial[1]:
        mean, error, frames = virial
        findings.append(("forces sign",
            f"{where}: the forces push the atoms apart on average: the virial Σ_i (R_i − R̄)·F_i averages "
            f"{mean:+.3g} ± {error:.2g} eV over {frames} frames (−3(N−1) k_B T < 0 for F = −dE/dR of thermally "
            f"sampled molecules); if the file stores +dE/dR (gradients), {remedies.force_sign}"))
    stress = energy_stress_slope(data)
    if stress is not None and slope_mismatch(stress):
        slip = next((words for ratio, words in STRESS_SLIPS
                     if abs(stress.slope - ratio) <= max(SLOPE_SIGMAS * stress.error, 0.2 * abs(ratio))), None)
        findings.append(("stresses", f"{where}: the stresses do not match the energies: over {stress.pairs} pairs of "
                         f"nearby cells ({stress.effective_pairs:.3g} effective), E_b − E_a + ½(F_a + F_b)·u = s · "
                         f"½(V_a σ_a + V_b σ_b):ε fits with s = {stress.slope:.3g} ± {stress.error:.2g} (correlation "
                         f"{stress.correlation:.2f}; s = 1 for stress in eV/Å³ with ASE's sign, positive under "
                         "tension)" + (f": it looks like {slip}" if slip else "")))
    suspect = implausible_charges(data)
    if suspect is not None:
        findings.append(("dipoles", suspect.finding(where, data.sources)))
    return findings
