"""What the checks do (:class:`CheckSettings`) and where they warn or fail (:class:`Thresholds`)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class CheckSettings:
    """Parameters of the checks. Units: Å, fs, K.

    Fields:
      fd_step: central finite-difference step δ in Å. In float64 the truncation
        error is δ²/6 |∂³E/∂R³| (~1e-8 · curvature scale) and the rounding error
        ~1e-16 |E| / δ (~1e-9 eV/Å for |E| = 1000 eV).
      scan_step: step of the smoothness scans in Å.
      scan_margin: how far beyond the largest cutoff the scans go, Å.
      refine: sub-steps used to re-scan a suspicious scan interval.
      displacement: length of the random per-atom displacement in Å (0.05, the
        original's failing test).
      displacement_trials: number of random displacements.
      fd_strain_step: central finite-difference step h of the strain (dimensionless) for the stress of a periodic
        cell: the truncation error h²/6 · |∂³E/∂ε³| / V is ~1e-10 eV/Å³ for elastic constants of ~1000 GPa, the
        rounding error ~1e-16 |E| / (h V) below 1e-10 eV/Å³ too.
      cell_strain: size of the random symmetric strain (each component of ε up to this, dimensionless) of the
        second cell at which the stress is checked, so that a stress that vanishes at the given cell (a relaxed
        crystal) still has a size, a sign and a ratio to compare.
      nve_steps, nve_timestep, nve_temperature: the NVE run (velocity Verlet from
        Maxwell–Boltzmann momenta at ``nve_temperature``, zero total momentum).
      nve_stride: steps between recorded frames.
      seed: seed of rotations, permutations, displacements and momenta.
      max_structures: structures taken from a geometry file when none are chosen.
    """

    fd_step: float = 1e-4
    scan_step: float = 0.01
    scan_margin: float = 0.5
    refine: int = 10
    displacement: float = 0.05
    displacement_trials: int = 8
    fd_strain_step: float = 1e-5
    cell_strain: float = 0.02
    nve_steps: int = 2000
    nve_timestep: float = 0.5
    nve_temperature: float = 300.0
    nve_stride: int = 10
    seed: int = 0
    max_structures: int = 3

    @classmethod
    def quick(cls) -> CheckSettings:
        """Coarser scans (0.02 Å), 4 displacements, 200 NVE steps, one structure."""
        return cls(scan_step=0.02, displacement_trials=4, nve_steps=200, max_structures=1)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """(warn_above, fail_above) of every measured value, with the reason for each.

    Fields:
      fd_relative: max_ia |F_a − F_FD| / max(1 eV/Å, max |F_FD|), dimensionless.
        Exact gradients reach ~1e-8 (see ``CheckSettings.fd_step``); 1e-5 leaves
        room for steep repulsion, 1e-3 is a wrong force.
      fd_ratio: fail when |s − 1| exceeds it, for the least-squares slope s of
        analytic on numerical forces (s = 2: doubled, s = −1: sign flipped) and for
        each term's weight in the total force; checked only where resolved, i.e.
        where fd_ratio · max |F_FD| (for a weight: the part of the term's force the
        other terms do not explain) exceeds the warn bound of fd_relative · max(1,
        max |F_FD|): 0.01 eV/Å with the defaults (round-off forces at a minimum have
        no meaningful ratio; :mod:`physnetjax.check.forces`).
        A correct gradient has s = 1 up to the finite-difference truncation error
        (~1e-6 with steep short-range repulsion).
      invariance: |ΔE| eV and max |ΔF| eV/Å under rotation, reflection, translation,
        permutation, padding, batching (for a crystal also wrapping and a supercell, and the
        virial change V |Δσ| eV); and |Σ F| eV/Å, |torque| eV. float64
        rounding gives ~1e-12; 1e-6 warns, 1e-3 is a broken symmetry.
      curvature: max_i |F_i(R + δ) − F_i(R)| / δ in eV/Å² for random per-atom
        moves of δ = 0.05 Å. A harmonic bond of force constant k moved at both
        ends gives at most 2k; the stiffest covalent bond (N≡N, 2359 cm⁻¹,
        k ≈ 143 eV/Å²) gives ~290. Warn above 500 eV/Å²; above 2000 eV/Å² the
        surface is a cliff (the original gave 0.14 → 18.6 eV/Å for one such move).
      nve_energy: max_t |E_tot(t) − E_tot(0)| per atom in meV. Velocity Verlet at
        0.5 fs fluctuates by ~0.1–0.5 meV/atom for organic molecules at 300 K.
      nve_force: largest |F_i| over the run, eV/Å. Thermal forces in 300 K organic
        MD stay below ~10 eV/Å.
      smoothness: largest force change per scan step, eV/Å: reported only (the
        check fails on a detected discontinuity, not on this value).
      float32_forces: max |F32 − F64| in eV/Å (:mod:`physnetjax.check.precision`). Full
        float32 gives ~1e-5 eV/Å and less (shipped ethanol model: 6e-6); warn above 1 meV/Å,
        a twentieth of a good model's force error (20–50 meV/Å MAE), where reduced-precision
        products start to show (TF32 on an H200: 4.2 meV/Å); fail above 10 meV/Å, where
        float32 adds an error of the model's own size.
      stress_fd: max_ab |σ_ab − σ_FD,ab| in GPa, the stress of a periodic cell against central differences of the
        energy under strain (:mod:`physnetjax.check.stress`). An exact strain derivative reaches ~1e-8 GPa; warn
        above 1e-4 GPa (0.1 MPa), fail above 0.01 GPa (10 MPa), far below the GPa-sized stresses of a few per cent
        strain that a wrong sign or volume misses by their own size. The least-squares slope of σ on σ_FD is judged
        with ``fd_ratio`` where fd_ratio · max |σ_FD| exceeds the warn bound (max |σ_FD| > 0.1 GPa).
      float32_energy: max |E32 − E64| per atom in meV (element energies added in float64).
        Full float32: ~1e-4 meV/atom; TF32 on an H200: 0.25; warn above 0.1, fail above
        1 meV/atom (the energy error of a good model).
      float32_stress: max_ab |σ32 − σ64| in GPa of a crystal. Full float32: 4e-6 to 6e-6 GPa where |σ| reaches
        11 GPa (a random copper model, 4 and 32 atoms, :mod:`physnetjax.check.precision`); warn above 1e-3 GPa
        (10 bar, 0.05 % of the density of water under NPT), fail above 0.01 GPa (100 bar: half a per cent of water's
        density, the size of a good model's pressure error).
    """

    fd_relative: tuple = (1e-5, 1e-3)
    fd_ratio: float = 1e-3
    invariance: tuple = (1e-6, 1e-3)
    curvature: tuple = (500.0, 2000.0)
    nve_energy: tuple = (1.0, 10.0)
    nve_force: tuple = (25.0, 100.0)
    smoothness: tuple = (float("inf"), float("inf"))
    stress_fd: tuple = (1e-4, 1e-2)
    float32_forces: tuple = (1e-3, 1e-2)
    float32_energy: tuple = (0.1, 1.0)
    float32_stress: tuple = (1e-3, 1e-2)
