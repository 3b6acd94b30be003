"""Check 3: energy and forces along bond-stretch scans through every cutoff.

For each bond type (element pair with at least one pair closer than 1.25 × the sum
of covalent radii) one bond i–j is stretched (the choice of bond and end below): atom j
is placed at

    r_j(d) = r_i + d u,   u = (r_j − r_i) / |r_j − r_i|

for d from min(d₀, smallest cutoff − 0.25 Å) (not below 0.6 d₀) to the largest
cutoff + ``scan_margin``, in steps h, all other atoms fixed. The cutoffs crossed
are the model's message-passing cutoff, the end of the Coulomb short-range switch
(r_sr / 2), the long-range Coulomb cutoff and the ZBL cutoff, whichever it has.

No third atom may be run into: along the scan every other atom k must stay at least

    min(start, 0.6 d_jk⁰)   from atom j   (d_jk⁰: their distance in the given geometry),

i.e. no pair is squeezed more than the scanned one is (to the scan's start, at most
to 0.6 of its length). A ray through a third atom (a linear molecule's middle atom
pulled onto the far end, O=C=O) would otherwise "find" the collision's force spike
as a discontinuity. Every bond of the type, stretched from either end, is a
candidate; the first (index order, heavier atom fixed first) whose whole range keeps
clear is scanned, so a terminal atom is pulled outward. When none is clear, the one
with the longest clear stretch around d₀ is scanned over that stretch only, and the
row warns if it then misses a cutoff. details: ``closest_other_A`` (closest approach
of a third atom to atom j), ``clearance_A`` (the bound above), ``truncated``.

A model whose energy and forces do not change along a scan at all (force jumps and
energy changes ≤ the floors below: a constant energy, an untrained or broken model)
gets a warning: a flat line is trivially smooth.

Per step k, with g = dE/dd = −F_j · u:

* force jump J_k = max_i |F_i(d_{k+1}) − F_i(d_k)|  (eV/Å; reported: largest J_k);
* energy residual e_k = |E_{k+1} − E_k − h (g_k + g_{k+1}) / 2|: the trapezoid rule
  is exact to O(h³ E''') for a C¹ energy, so a residual that does not shrink is an
  energy jump that the forces do not see.

Suspicious intervals (the 3 with the largest second difference of F, the 3 with the
largest e_k, and each one containing a cutoff) are re-scanned with ``refine``
sub-steps, three times, each time following the sub-interval with the largest jump
(residual), down to h / refine³. A smooth function's jump shrinks ~refine-fold per
level (its residual ~refine³-fold); a discontinuity keeps its size at every level.
An interval is flagged when the finest jump (residual) is at least half the coarse
one and the coarse one exceeds 1e-5 eV/Å (1e-6 eV). Any flag fails the check.
"""

from __future__ import annotations

from collections.abc import Callable

import ase.data
import numpy as np

from physnetjax.check.evaluate import Evaluator
from physnetjax.check.report import CheckResult
from physnetjax.check.settings import CheckSettings, Thresholds

GROUP = "smoothness"
BOND_FACTOR = 1.25
FORCE_JUMP_FLOOR = 1e-5
"""eV/Å: smaller force jumps are not flagged."""
ENERGY_JUMP_FLOOR = 1e-6
"""eV: smaller energy jumps are not flagged."""
KEEP_FRACTION = 0.5
REFINE_LEVELS = 3
CANDIDATES = 3


def model_cutoffs(model) -> dict:
    """Every distance (Å) at which a term of ``model`` switches off: name → value."""
    cutoffs = {"message passing": float(model.cutoff)}
    if model.charges:
        cutoffs["Coulomb switch"] = 0.5 * float(model.sr_cutoff)
        if model.coulomb_lr_cutoff is not None:
            cutoffs["Coulomb long range"] = float(model.coulomb_lr_cutoff)
    if model.zbl:
        cutoffs["ZBL"] = float(model.repulsion_cutoff)
    if getattr(model, "dispersion", None) is not None:
        cutoffs["D3 dispersion"] = float(model.dispersion_cutoff)
    return cutoffs


def bond_types(atomic_numbers: np.ndarray, positions: np.ndarray) -> list[tuple[str, int, int]]:
    """One bonded pair (label "C-H", i, j) per element pair, first by index order."""
    return [(label, *pairs[0]) for label, pairs in bonds_by_type(atomic_numbers, positions).items()]


def bonds_by_type(atomic_numbers: np.ndarray, positions: np.ndarray) -> dict[str, list[tuple[int, int]]]:
    """Every bonded pair (heavier atom first; equal elements in index order) per label "C-H", by index order."""
    bonds: dict[str, list[tuple[int, int]]] = {}
    n = len(atomic_numbers)
    for i in range(n):
        for j in range(i + 1, n):
            zi, zj = int(atomic_numbers[i]), int(atomic_numbers[j])
            limit = BOND_FACTOR * (ase.data.covalent_radii[zi] + ase.data.covalent_radii[zj])
            if np.linalg.norm(positions[j] - positions[i]) >= limit:
                continue
            heavy, light = max(zi, zj), min(zi, zj)
            label = f"{ase.data.chemical_symbols[heavy]}-{ase.data.chemical_symbols[light]}"
            bonds.setdefault(label, []).append((i, j) if zi >= zj else (j, i))
    return bonds


def scan_distances(d0: float, cutoffs: dict, settings: CheckSettings) -> np.ndarray:
    """The scan's distances (Å): from min(d₀, smallest cutoff − 0.25), not below 0.6 d₀, past the largest cutoff."""
    start = max(0.6 * d0, min(d0, min(cutoffs.values()) - 0.25))
    stop = max(cutoffs.values()) + settings.scan_margin
    return np.arange(start, stop + 0.5 * settings.scan_step, settings.scan_step)


def plan_scan(positions: np.ndarray, anchor: int, moving: int, cutoffs: dict, settings: CheckSettings) -> dict:
    """Distances of the scan of ``anchor``–``moving`` that keep every third atom clear (module docstring).

    Returns dict: ``distances`` (the clear stretch around d₀), ``full_range_A``, ``clearance_A``
    (per third atom), ``closest_other_A`` (over the clear stretch; None without third atoms),
    ``truncated`` and ``blocking_atom`` (the atom that ends the stretch, or None).
    """
    r = np.asarray(positions, np.float64)
    d0 = float(np.linalg.norm(r[moving] - r[anchor]))
    distances = scan_distances(d0, cutoffs, settings)
    others = np.array([k for k in range(len(r)) if k not in (anchor, moving)], int)
    plan = {"distances": distances, "full_range_A": [float(distances[0]), float(distances[-1])],
            "clearance_A": {}, "closest_other_A": None, "truncated": False, "blocking_atom": None}
    if not len(others):
        return plan
    path = _place(r, anchor, moving, distances)[:, moving]
    separation = np.linalg.norm(path[:, None] - r[others][None], axis=-1)  # (K, others)
    clearance = np.minimum(distances[0], 0.6 * np.linalg.norm(r[others] - r[moving], axis=-1))
    clear = np.all(separation >= clearance, axis=1)
    k0 = int(np.argmin(np.abs(distances - d0)))
    lo, hi = k0, k0
    if clear[k0]:
        while lo > 0 and clear[lo - 1]:
            lo -= 1
        while hi < len(distances) - 1 and clear[hi + 1]:
            hi += 1
    blocked = [k for k in (lo - 1, hi + 1) if 0 <= k < len(distances)]
    if not clear[k0]:
        blocked = [k0]
    plan.update(distances=distances[lo:hi + 1], clearance_A={int(k): float(c) for k, c in zip(others, clearance)},
                closest_other_A=float(separation[lo:hi + 1].min()), truncated=bool(blocked),
                blocking_atom=int(others[np.argmin(separation[blocked[-1]] - clearance)]) if blocked else None)
    return plan


def choose_scan(positions: np.ndarray, pairs: list[tuple[int, int]], cutoffs: dict,
                settings: CheckSettings) -> tuple[int, int, dict]:
    """(anchor, moving, plan) of the first candidate scan that keeps clear (module docstring)."""
    best = None
    for a, b in pairs:
        for anchor, moving in ((a, b), (b, a)):
            plan = plan_scan(positions, anchor, moving, cutoffs, settings)
            if not plan["truncated"]:
                return anchor, moving, plan
            extent = len(plan["distances"])
            if best is None or extent > best[0]:
                best = (extent, anchor, moving, plan)
    return best[1], best[2], best[3]


def _place(positions: np.ndarray, anchor: int, moving: int, distances: np.ndarray) -> np.ndarray:
    """(K, n, 3) copies of ``positions`` with atom ``moving`` at the given distances from ``anchor``."""
    u = positions[moving] - positions[anchor]
    u = u / np.linalg.norm(u)
    stack = np.repeat(positions[None], len(distances), axis=0)
    stack[:, moving] = positions[anchor] + distances[:, None] * u
    return stack


def _steps(energies: np.ndarray, forces: np.ndarray, points: np.ndarray, slopes: np.ndarray):
    """Per-interval force jumps J (K−1,), force differences (K−1, n, 3) and energy residuals (K−1,) of a scan with
    energies (K,) eV, forces (K, n, 3) eV/Å and dE/dx ``slopes`` (K,) at its ``points`` x (K,)."""
    h = np.diff(points)
    delta_f = np.diff(forces, axis=0)
    jumps = np.max(np.linalg.norm(delta_f, axis=-1), axis=-1)
    residual = np.abs(np.diff(energies) - 0.5 * h * (slopes[1:] + slopes[:-1]))
    return jumps, delta_f, residual


def _refine(sample: Callable, intervals: list, kinds: list, settings: CheckSettings) -> list[float]:
    """Follow each interval down ``REFINE_LEVELS`` levels of ``refine``-fold sub-division.

    At each level the sub-interval with the largest force jump (``kind`` "force") or
    energy residual ("energy") is kept. Returns that largest value at the finest level.
    """
    intervals = list(intervals)
    sizes = [0.0] * len(intervals)
    for _ in range(REFINE_LEVELS):
        if not intervals:
            break
        points = np.concatenate([np.linspace(lo, hi, settings.refine + 1) for lo, hi in intervals])
        energies, forces, slopes = sample(points)
        for m, kind in enumerate(kinds):
            part = slice(m * (settings.refine + 1), (m + 1) * (settings.refine + 1))
            sub_jumps, _, sub_residual = _steps(energies[part], forces[part], points[part], slopes[part])
            values = sub_jumps if kind == "force" else sub_residual
            best = int(np.argmax(values))
            sizes[m] = float(values[best])
            intervals[m] = (points[part][best], points[part][best + 1])
    return sizes


def find_discontinuities(sample: Callable, points: np.ndarray, marks, settings: CheckSettings,
                         interval_key: str) -> dict:
    """The scan ``sample(points) -> (energies (K,) eV, forces (K, n, 3) eV/Å, dE/dx (K,))`` over ``points`` x (K,),
    its suspicious intervals and those holding one of ``marks`` (values of x, e.g. cutoffs) refined (module
    docstring).

    Returns dict: ``jumps`` (K−1,) eV/Å, ``residual`` (K−1,) eV, ``energies`` (K,) eV, ``refined_intervals``,
    ``marked_intervals`` (how many of them hold a mark) and ``discontinuities`` (``kind``, ``interval_key``:
    [x_k, x_k+1], ``size``, ``unit``).
    """
    energies, forces, slopes = sample(points)
    jumps, delta_f, residual = _steps(energies, forces, points, slopes)

    second_difference = np.zeros_like(jumps)
    second_difference[1:-1] = np.max(
        np.linalg.norm(delta_f[1:-1] - 0.5 * (delta_f[:-2] + delta_f[2:]), axis=-1), axis=-1)
    suspects = (set(np.argsort(second_difference)[-CANDIDATES:].tolist())
                | set(np.argsort(residual)[-CANDIDATES:].tolist()))
    marked = {int(np.searchsorted(points, value)) - 1 for value in marks} & set(range(len(jumps)))
    suspects = sorted(suspects | marked)

    floors = {"force": FORCE_JUMP_FLOOR, "energy": ENERGY_JUMP_FLOOR}
    coarse = {"force": jumps, "energy": residual}
    tracks = [(kind, k) for k in suspects for kind in floors if coarse[kind][k] > floors[kind]]
    refined = _refine(sample, [(points[k], points[k + 1]) for _, k in tracks], [kind for kind, _ in tracks], settings)
    discontinuities = []
    for (kind, k), size in zip(tracks, refined):
        if size >= KEEP_FRACTION * coarse[kind][k]:
            discontinuities.append({"kind": kind, interval_key: [float(points[k]), float(points[k + 1])],
                                    "size": float(size), "unit": "eV/Å" if kind == "force" else "eV"})
    return {"jumps": jumps, "residual": residual, "energies": energies, "refined_intervals": len(suspects),
            "marked_intervals": len(marked), "discontinuities": discontinuities}


def scan_bond(evaluator: Evaluator, anchor: int, moving: int, cutoffs: dict, settings: CheckSettings) -> dict:
    """Scan one bond (see module docstring); returns the numbers reported in ``details``."""
    r = np.asarray(evaluator.structure.positions, np.float64)
    u = (r[moving] - r[anchor]) / np.linalg.norm(r[moving] - r[anchor])
    plan = plan_scan(r, anchor, moving, cutoffs, settings)
    distances = plan.pop("distances")
    if len(distances) < 4:
        raise ValueError(f"atoms {anchor}-{moving}: fewer than 4 scan points keep every other atom clear")

    def sample(points):
        energies, forces = evaluator.evaluate(_place(r, anchor, moving, points))
        return energies[:, 0], forces, -forces[:, moving] @ u

    scan = find_discontinuities(sample, distances, cutoffs.values(), settings, "between_A")
    jumps = scan["jumps"]
    worst = int(np.argmax(jumps))
    return {
        "range_A": [float(distances[0]), float(distances[-1])],
        "step_A": settings.scan_step,
        "points": len(distances),
        "cutoffs_A": cutoffs,
        "max_force_jump_eV_per_A": float(jumps[worst]),
        "max_force_jump_at_A": float(distances[worst]),
        "max_energy_residual_eV": float(scan["residual"].max()),
        "energy_span_eV": float(np.ptp(scan["energies"])),
        "refined_intervals": scan["refined_intervals"],
        "discontinuities": scan["discontinuities"],
        **plan,
    }


def check_smoothness(evaluator: Evaluator, index: int, settings: CheckSettings, thresholds: Thresholds) -> list:
    """One result ``smoothness.<bond type>`` per bond type; value: the largest force jump per step."""
    s = evaluator.structure
    cutoffs = model_cutoffs(evaluator.model)
    results = []
    positions = np.asarray(s.positions, np.float64)
    for label, pairs in bonds_by_type(s.atomic_numbers, positions).items():
        anchor, moving, _ = choose_scan(positions, pairs, cutoffs, settings)
        details = scan_bond(evaluator, anchor, moving, cutoffs, settings)
        details["atoms"] = [anchor, moving]
        found = details["discontinuities"]
        failure = None
        if found:
            failure = "discontinuous: " + ", ".join(
                f"{f['kind']} jump {f['size']:.2g} {f['unit']} at {f['between_A'][0]:.3f}–{f['between_A'][1]:.3f} Å"
                for f in found[:3])
        message = (f"atoms {anchor}-{moving}, {details['range_A'][0]:.2f}–{details['range_A'][1]:.2f} Å: "
                   f"max ΔF {details['max_force_jump_eV_per_A']:.2g} eV/Å per {settings.scan_step} Å step "
                   f"at {details['max_force_jump_at_A']:.2f} Å")
        if details["closest_other_A"] is not None:
            message += f"; other atoms kept ≥ {details['closest_other_A']:.2f} Å from atom {moving}"
        warnings = []
        if details["truncated"]:
            message += (f" (scan cut to the stretch keeping them clear: atom {details['blocking_atom']} lies on "
                        f"the path of every {label} bond)")
            missed = [name for name, value in cutoffs.items()
                      if not details["range_A"][0] < value < details["range_A"][1]]
            if missed:
                warnings.append(f"cutoffs not crossed: {', '.join(missed)}")
        if (details["max_force_jump_eV_per_A"] <= FORCE_JUMP_FLOOR
                and details["energy_span_eV"] <= ENERGY_JUMP_FLOOR):
            warnings.append("energy and forces do not change along the scan: the energy does not depend on the "
                            "geometry, an untrained or broken model")
        results.append(CheckResult.measured(f"smoothness.{label}", GROUP, index, details["max_force_jump_eV_per_A"],
                                            "eV/Å", thresholds.smoothness, message, details, failure,
                                            "; ".join(warnings) or None))
    return results
