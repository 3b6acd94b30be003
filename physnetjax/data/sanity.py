"""Plausibility of labels before training: force scale, and forces against energies (sign and units).

All checks warn (:class:`~physnetjax.validation.PhysNetInputWarning`) with the
evidence and the flag that fixes the data; neither changes anything.

1. **Force scale.** The RMS force component of molecules sampled at chemical
   temperatures is ~0.3–3 eV/Å (the bundled 500 K ethanol set: 0.98 eV/Å). Beyond
   :data:`FORCE_RMS_RANGE` the units are suspect: kcal/mol/Å read as eV/Å are 23×
   too large, hartree/bohr 51× too small (0.019 eV/Å for the bundled set; an RMS
   below 0.05 eV/Å in eV/Å means frames within ~1 K of a minimum).
2. **Energy scale.** After the best per-element reference energies (least squares
   E ≈ Σ_Z n_Z e_Z), the residual RMS per atom of molecular data in eV is
   ~0.01–0.3 eV/atom (bundled set: 0.015); above :data:`ENERGY_RESIDUAL_MAX`
   eV/atom the energies are probably in kcal/mol or kJ/mol (23× / 96× larger).
3. **Forces against energies.** For two nearby frames a, b of the same molecule
   the trapezoid rule gives, to third order in ΔR = R_b − R_a,

       E_b − E_a ≈ w = −½ (F_a + F_b) · ΔR          (F = −∂E/∂R).

   The least-squares slope s of ΔE on w over pairs of nearest frames (RMS
   displacement ≤ :data:`MAX_PAIR_RMSD` Å) is +1 for consistent labels, −1 when
   the forces are +∂E/∂R (fix: ``--force-sign -1``), and the unit ratio (e.g. 23.06
   or 1/23.06 for kcal/mol vs eV) when energies and forces are in different units
   (fix: ``--energy-unit`` / ``--force-unit``). It is judged only when the
   correlation of ΔE with w is strong (|r| ≥ :data:`MIN_CORRELATION`) over at least
   :data:`MIN_PAIRS` pairs; otherwise (frames far apart) only the sign is checked:
4. **Force sign from the virial.** For a bound molecule sampled at a temperature T
   (MD or Boltzmann sampling), equipartition over the coordinates relative to the
   centre gives ⟨Σ_i (R_i − R̄)·∂E/∂R_i⟩ = 3(N − 1) k_B T > 0, so the virial
   W = Σ_i (R_i − R̄)·F_i averages −3(N − 1) k_B T (bundled set at 500 K: −1.00 eV,
   expected −1.03): the forces pull the atoms together on average. A mean W above
   zero by :data:`VIRIAL_MIN_SIGMAS` standard errors means forces stored as +∂E/∂R
   (fix: ``--force-sign -1``).
"""

from __future__ import annotations

import logging
import warnings
from typing import Iterable, Optional

import numpy as np

from physnetjax.validation import PhysNetInputWarning

logger = logging.getLogger(__name__)

FORCE_RMS_RANGE = (0.05, 10.0)
"""eV/Å: plausible RMS force component of a molecular data set."""

ENERGY_RESIDUAL_MAX = 1.0
"""eV/atom: largest plausible RMS per atom of E about its per-element linear fit."""

SLOPE_RANGE = (0.5, 2.0)
"""Accepted slope of ΔE on −½(F_a + F_b)·ΔR (1 for consistent labels)."""

MAX_PAIR_RMSD = 0.3
"""Å: largest RMS displacement per atom between two frames used as a pair."""

MIN_PAIRS = 10
MIN_CORRELATION = 0.7
VIRIAL_MIN_SIGMAS = 3.0
"""Standard errors by which the mean virial must exceed 0 to report flipped forces (check 4)."""
MAX_FRAMES_PER_MOLECULE = 1000
"""Frames of one molecule searched for nearest neighbours (a random subset beyond that)."""


def nearest_frame_pairs(positions: np.ndarray, max_rmsd: float = MAX_PAIR_RMSD) -> np.ndarray:
    """(P, 2) index pairs (i < j): each frame with its nearest other frame, if within ``max_rmsd`` Å RMS per atom.

    ``positions`` (G, n, 3) of G frames of one molecule (same atoms in the same order).
    """
    g, n = positions.shape[:2]
    if g < 2:
        return np.zeros((0, 2), np.int64)
    flat = positions.reshape(g, -1)
    sq = (flat * flat).sum(axis=1)
    dist2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * flat @ flat.T, 0.0) / n
    np.fill_diagonal(dist2, np.inf)
    nearest = np.argmin(dist2, axis=1)
    close = dist2[np.arange(g), nearest] <= max_rmsd**2
    pairs = np.sort(np.stack([np.arange(g), nearest], axis=1)[close], axis=1)
    return np.unique(pairs, axis=0)


def energy_force_slope(data, seed: int = 0) -> Optional[tuple[float, float, int]]:
    """(slope s, correlation r, number of pairs) of ΔE on −½(F_a + F_b)·ΔR, or None without enough pairs.

    Uses frames with both energy and force labels, grouped by identical atomic numbers.
    """
    usable = np.nonzero(data.has_E & data.has_F)[0]
    rng = np.random.default_rng(seed)
    keys = {}
    for k in usable:
        keys.setdefault(data.Z[k].tobytes(), []).append(k)
    de, w = [], []
    for frames in keys.values():
        frames = np.asarray(frames)
        if len(frames) > MAX_FRAMES_PER_MOLECULE:
            frames = np.sort(rng.choice(frames, MAX_FRAMES_PER_MOLECULE, replace=False))
        n = int(data.N[frames[0]])
        positions = data.R[frames, :n]
        pairs = nearest_frame_pairs(positions)
        if not len(pairs):
            continue
        a, b = frames[pairs[:, 0]], frames[pairs[:, 1]]
        displacement = data.R[b, :n] - data.R[a, :n]
        w.append(-0.5 * ((data.F[a, :n] + data.F[b, :n]) * displacement).sum(axis=(1, 2)))
        de.append(data.E[b] - data.E[a])
    if not w:
        return None
    w, de = np.concatenate(w), np.concatenate(de)
    if len(w) < MIN_PAIRS or not np.any(w) or not np.any(de - de.mean()):
        return None
    slope = float((w * de).sum() / (w * w).sum())
    correlation = float(np.corrcoef(w, de)[0, 1])
    return slope, correlation, len(w)


def force_virial(data) -> Optional[tuple[float, float, int]]:
    """(mean, standard error, frames) of W = Σ_i (R_i − R̄)·F_i in eV over frames with forces (None: < 2 frames).

    R̄ is the mean position of the frame's atoms; W < 0 on average for F = −∂E/∂R
    of thermally sampled molecules (check 4 of the module docstring).
    """
    frames = np.nonzero(data.has_F)[0]
    if len(frames) < 2:
        return None
    real = (data.Z[frames] > 0)[..., None]
    centre = (data.R[frames] * real).sum(axis=1) / data.N[frames, None]
    virial = ((data.R[frames] - centre[:, None]) * data.F[frames] * real).sum(axis=(1, 2))
    return float(virial.mean()), float(virial.std(ddof=1) / np.sqrt(len(frames))), len(frames)


def energy_residual_per_atom(data) -> Optional[float]:
    """RMS over frames of (E − Σ_Z n_Z e_Z)/N in eV/atom with e_Z fitted by least squares (None: < 2 frames)."""
    frames = np.nonzero(data.has_E)[0]
    if len(frames) < 2:
        return None
    z = data.Z[frames]
    elements = np.unique(z[z > 0])
    counts = (z[:, :, None] == elements[None, None, :]).sum(axis=1).astype(np.float64)
    coefficients, *_ = np.linalg.lstsq(counts, data.E[frames], rcond=None)
    residual = (data.E[frames] - counts @ coefficients) / data.N[frames]
    return float(np.sqrt(np.mean(residual**2)))


def check_label_sanity(data, where: str = "data", skip: Iterable[str] = ()) -> list[str]:
    """Warn about an implausible force scale and about forces that disagree with the energies.

    ``skip``: quantities (``"forces"``, ``"energies"``, or both in one string) already judged otherwise,
    e.g. against a model's predictions (:func:`physnetjax.eval.evaluate.label_scale_findings`): a finding
    about them is left out, so that one problem gives one message. Returns the warning messages (also issued as
    :class:`PhysNetInputWarning`).
    """
    findings = []  # (quantities concerned, message)
    forces = data.F[data.has_F]
    real = (data.Z[data.has_F] > 0)
    if real.any():
        rms = float(np.sqrt(np.mean(forces[real] ** 2)))
        low, high = FORCE_RMS_RANGE
        if rms > high:
            findings.append(("forces",
                f"{where}: RMS force component {rms:.3g} eV/Å is implausibly large for molecules (typical 0.3–3); "
                "kcal/mol/Å read as eV/Å are 23× too large: pass --energy-unit (and --force-unit) to convert"))
        elif rms < low:
            findings.append(("forces",
                f"{where}: RMS force component {rms:.3g} eV/Å is implausibly small for molecules (typical 0.3–3; "
                "below 0.05 only within ~1 K of a minimum); hartree/bohr read as eV/Å are 51× too small: pass "
                "--energy-unit hartree (--force-unit hartree/bohr)"))
    spread = energy_residual_per_atom(data)
    if spread is not None and spread > ENERGY_RESIDUAL_MAX:
        findings.append(("energies",
            f"{where}: energies scatter by {spread:.3g} eV/atom (RMS about their per-element fit; typical 0.01–0.3 "
            "eV/atom for molecules); kcal/mol or kJ/mol read as eV are 23× / 96× too large: pass --energy-unit"))
    fit = energy_force_slope(data)
    judged = fit is not None and abs(fit[1]) >= MIN_CORRELATION
    if fit is None and not (data.has_E.any() and data.has_F.any()):
        logger.info("%s: no %s labels: forces are not checked against energies", where,
                    "force" if data.has_E.any() else "energy")
    elif fit is None:
        logger.info("%s: too few nearby frames to check forces against energies", where)
    else:
        slope, correlation, pairs = fit
        evidence = (f"over {pairs} pairs of nearby frames, E_b − E_a = s · [−½(F_a + F_b)·(R_b − R_a)] fits with "
                    f"s = {slope:.3g} (correlation {correlation:.2f}; s = 1 for F = −dE/dR in the same units)")
        if abs(correlation) >= MIN_CORRELATION and slope < 0:
            findings.append(("forces", f"{where}: the forces have the opposite sign of −dE/dR: {evidence}; if the "
                             "file stores +dE/dR (gradients), pass --force-sign -1"))
        elif abs(correlation) >= MIN_CORRELATION and not SLOPE_RANGE[0] <= slope <= SLOPE_RANGE[1]:
            findings.append(("energies forces", f"{where}: energies and forces do not match in scale: {evidence}; "
                             "are they in different units? set --energy-unit and --force-unit (e.g. kcal/mol vs eV: "
                             "23.06)"))
        else:
            logger.info("%s: forces consistent with energies: %s", where, evidence)
    virial = None if judged else force_virial(data)
    if virial is not None and virial[0] > VIRIAL_MIN_SIGMAS * virial[1]:
        mean, error, frames = virial
        findings.append(("forces",
            f"{where}: the forces push the atoms apart on average: the virial Σ_i (R_i − R̄)·F_i averages "
            f"{mean:+.3g} ± {error:.2g} eV over {frames} frames (−3(N−1) k_B T < 0 for F = −dE/dR of thermally "
            "sampled molecules); if the file stores +dE/dR (gradients), pass --force-sign -1"))
    skipped = {word for quantities in skip for word in quantities.split()}
    messages = [message for quantities, message in findings if not set(quantities.split()) & skipped]
    for message in messages:
        warnings.warn(message, PhysNetInputWarning, stacklevel=2)
    return messages
