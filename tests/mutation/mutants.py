"""The curated mutants of ``tests/mutation/run.py``: planted bugs the suite must catch.

Each :class:`Mutant` replaces one snippet of one file of ``physnetjax/`` (the snippet
must occur exactly once; ``tests/test_mutants.py`` checks that every one still does,
so the list is kept in step with the code) and names the test files that should
catch it. A mutant *survives* when those tests all pass with the bug in place.

The first four survived an independent audit (2026-11) and are now killed by
``tests/test_goldens.py``; the next fifteen are the audit's "obvious" ones; the rest
were added with this runner, the last groups (2026-12-03) for the spectra, ensembles,
thermostats, frame selection, the trainer's formulas, evaluation, neighbor-list overflow,
data units, checkpoint integrity, the MD report, ``check``, the calculator, the learning
loop and D3 (seventeen of them survived at first and are killed by tests added with
them). ``EXPLAINED`` lists survivors that are equivalent to the original (no test can
kill them) with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

GOLDENS = ("tests/test_goldens.py",)
PHYSICS = ("tests/test_physics.py",)
MODEL = ("tests/test_model.py", "tests/test_goldens.py")
PERIODIC = ("tests/test_pbc.py", "tests/test_goldens.py")
MESSAGES = ("tests/test_model.py", "tests/test_message_pass.py")
MD = ("tests/test_units.py", "tests/test_md_integrators.py")
LEGACY = ("tests/test_checkpoint_legacy.py", "tests/test_migrate.py")
NEIGHBORS = ("tests/test_pair_lists.py", "tests/test_neighbors_lists.py", "tests/test_neighbors_model.py")
ELEMENTS = ("tests/test_element_energies.py",)
ZBL_DEFAULT = ("tests/test_zbl_default.py",)
HARMONIC = ("tests/test_spectra_harmonic.py",)
SPECTRA_MD = ("tests/test_spectra_md.py",)
ENSEMBLE = ("tests/test_ensemble.py",)
CALIBRATION = ("tests/test_ensemble_calibration.py",)
THERMOSTATS = ("tests/test_md_ensembles.py",)
LANGEVIN = ("tests/test_md_integrators.py",)
SELECTION = ("tests/test_learn_selection.py",)
NORMAL_MODES = ("tests/test_normal_modes.py",)
TRAIN = ("tests/test_train.py", "tests/test_train_loss.py")
TRAIN_ENSEMBLE = ("tests/test_train_ensemble.py",)
EVAL = ("tests/test_eval.py",)
TRIPLETS = ("tests/test_md_triplets.py",)
MD_DRIVER = ("tests/test_md_driver.py",)
CHECK = ("tests/test_check.py",)
CALCULATOR = ("tests/test_calculator.py",)
DATA = ("tests/test_data.py",)
CHECKPOINT = ("tests/test_checkpoint.py",)
LEARN = ("tests/test_learn.py",)
CLOSE_CONTACTS = ("tests/test_md_close_contacts.py",)
DISPERSION = ("tests/test_dispersion.py", "tests/test_dispersion_gradient.py", "tests/test_model_dispersion.py")


@dataclass(frozen=True)
class Mutant:
    """One planted bug: in ``path`` replace ``old`` (occurring once) by ``new``; ``tests`` should fail."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple
    what: str


MUTANTS = (
    # -- the audit's four survivors ---------------------------------------------------------
    Mutant("dipole_sign", "physnetjax/physics/charges.py",
           "return sum_per_molecule(charges[:, None] * positions",
           "return -sum_per_molecule(charges[:, None] * positions", GOLDENS,
           "μ = −Σ q_i r_i"),
    Mutant("dipole_uncorrected_charges", "physnetjax/model.py",
           "dipoles = dipole_moments(charges, positions",
           "dipoles = dipole_moments(raw_charges, positions", GOLDENS,
           "dipoles from the raw charges q̃ (before the total-charge correction)"),
    Mutant("coulomb_sr_cutoff_ignored", "physnetjax/model.py",
           "return self.cutoff if self.coulomb_sr_cutoff is None else self.coulomb_sr_cutoff",
           "return self.cutoff", GOLDENS,
           "the shielded Coulomb kernel always switches over the model cutoff"),
    Mutant("stress_first_cell_volume", "physnetjax/model.py",
           'output["stress"] = grad_strain / volume[:, None, None]',
           'output["stress"] = grad_strain / volume[0]', GOLDENS,
           "every cell of a batch divided by the first cell's volume"),
    # -- the audit's fifteen obvious ones -----------------------------------------------------
    Mutant("force_sign", "physnetjax/model.py",
           'output["forces"] = -grad_positions', 'output["forces"] = grad_positions', MODEL,
           "F = +∂E/∂R"),
    Mutant("pair_half_dropped", "physnetjax/physics/pairs.py",
           "return 0.5 * sum_per_molecule(pair_energy", "return sum_per_molecule(pair_energy", PHYSICS,
           "each unordered pair counted twice"),
    Mutant("charge_correction_dropped", "physnetjax/physics/charges.py",
           "return jnp.where(atom_mask, raw + correction[atom_segments], 0.0)",
           "return jnp.where(atom_mask, raw, 0.0)", PHYSICS,
           "no total-charge correction"),
    Mutant("charge_correction_counts_padding", "physnetjax/physics/charges.py",
           "count = sum_per_molecule(atom_mask.astype(raw.dtype), atom_segments, num_molecules)",
           "count = sum_per_molecule(jnp.ones_like(raw), atom_segments, num_molecules)", MODEL,
           "N in the correction counts padded atoms"),
    Mutant("message_padding", "physnetjax/message_pass.py",
           "jnp.where(edge_mask[..., None], radial.astype(dtype), 0.0)", "radial.astype(dtype)",
           ("tests/test_model.py::test_padding_and_batching_do_not_change_results", "tests/test_message_pass.py"),
           "padded edges carry messages"),
    Mutant("atom_padding", "physnetjax/model.py",
           "return jnp.where(atom_mask, y, 0.0)", "return y", MODEL,
           "padded atoms get an energy and a charge"),
    Mutant("zbl_inverse_distance", "physnetjax/physics/zbl.py",
           "x = (r / screening_length)[:, None]", "x = (1.0 / r / screening_length)[:, None]", PHYSICS,
           "the original's bug: ZBL screening fed 1/r instead of r"),
    Mutant("zbl_bohr_angstrom", "physnetjax/physics/zbl.py",
           "screening_length = a_coefficient * BOHR /", "screening_length = a_coefficient /", PHYSICS,
           "the original's bug: screening length in Bohr used as Å"),
    Mutant("coulomb_constant", "physnetjax/units.py",
           "COULOMB_CONSTANT = 1.6021766208e-19 * SPEED_OF_LIGHT_M_PER_S**2 * 1e-7 / 1e-10",
           "COULOMB_CONSTANT = 14.4", PHYSICS + ("tests/test_units.py",),
           "k_e rounded to 14.4"),
    Mutant("md_unit_original_bug", "physnetjax/units.py",
           "AMU_A2_PER_FS2_IN_EV = ATOMIC_MASS_UNIT_KG * 1e-20 / 1e-30 / ELEMENTARY_CHARGE_C",
           "AMU_A2_PER_FS2_IN_EV = ATOMIC_MASS_UNIT_KG * 1e-20 / 1e-26 / ELEMENTARY_CHARGE_C", MD,
           "the original's 0.01036 for 103.6427 (10⁴ in accelerations)"),
    Mutant("md_kick_units", "physnetjax/md/integrators.py",
           "half_dt * state.forces / AMU_A2_PER_FS2_IN_EV", "half_dt * state.forces * AMU_A2_PER_FS2_IN_EV", MD,
           "velocity-Verlet kick multiplies by the unit instead of dividing"),
    Mutant("coulomb_switch_inverted", "physnetjax/physics/coulomb.py",
           "return switch / shielded + (1.0 - switch) / r", "return (1.0 - switch) / shielded + switch / r",
           PHYSICS, "the original's bug: bare 1/r at short range, shielded at long range"),
    Mutant("coulomb_switch_range", "physnetjax/physics/coulomb.py",
           "switch = cutoff_polynomial(2.0 * r / sr_cutoff)", "switch = cutoff_polynomial(r / sr_cutoff)",
           PHYSICS, "shielding switched over [0, r_sr] instead of [0, r_sr/2]"),
    Mutant("zbl_cutoff_range", "physnetjax/physics/zbl.py",
           "cutoff_polynomial(r / cutoff)", "cutoff_polynomial(r / (2.0 * cutoff))", PHYSICS,
           "ZBL switched off at twice its cutoff (not zero at the cutoff)"),
    Mutant("stress_without_volume", "physnetjax/model.py",
           'output["stress"] = grad_strain / volume[:, None, None]', 'output["stress"] = grad_strain', PERIODIC,
           "stress = ∂E/∂ε without 1/V"),
    Mutant("migration_raw_weights", "physnetjax/checkpoint/legacy.py",
           'preferred = "ema_params" if weights == "ema" else "params"',
           'preferred = "params" if weights == "ema" else "ema_params"', LEGACY,
           "migration takes the raw training weights instead of the EMA ones"),
    Mutant("migration_bool_of_string", "physnetjax/checkpoint/legacy.py",
           "    if isinstance(value, str):\n        text = value.strip().lower()",
           "    if isinstance(value, str):\n        return bool(value)\n        text = value.strip().lower()", LEGACY,
           'legacy "False" read with bool() (= True)'),
    Mutant("host_edges_shortened", "physnetjax/neighbors/molecules.py",
           "keep = d < cutoff", "keep = d < 0.9 * cutoff", NEIGHBORS,
           "host neighbor list misses pairs between 0.9 and 1 cutoff"),
    Mutant("jit_edges_shortened", "physnetjax/neighbors/neighbor_list.py",
           "keep = keep & (jnp.sum(vec * vec, axis=-1) < radius * radius)",
           "keep = keep & (jnp.sum(vec * vec, axis=-1) < 0.81 * radius * radius)", NEIGHBORS,
           "in-jit neighbor list misses pairs between 0.9 and 1 radius"),
    # -- added with the runner ------------------------------------------------------------------
    Mutant("host_half_list", "physnetjax/neighbors/molecules.py",
           "dst, src = np.nonzero(~np.eye(n, dtype=bool))", "dst, src = np.nonzero(np.triu(np.ones((n, n), bool), 1))",
           NEIGHBORS, "host builder emits a half list i < j"),
    Mutant("coulomb_not_force_shifted", "physnetjax/physics/coulomb.py",
           "shifted_bare = 1.0 / r + r * inv_rc2 - 2.0 / lr_cutoff", "shifted_bare = 1.0 / r - 1.0 / lr_cutoff",
           PHYSICS, "energy-shifted instead of force-shifted bare Coulomb"),
    Mutant("safe_distance_dropped", "physnetjax/physics/pairs.py",
           "safe = jnp.where(pair_mask[:, None], displacements, unit)", "safe = displacements", PHYSICS,
           "no double-where: NaN gradients through padded pairs at r = 0"),
    Mutant("zbl_padded_z", "physnetjax/physics/zbl.py",
           "zi = jnp.where(pair_mask, z_i, 1).astype(r.dtype)", "zi = z_i.astype(r.dtype)", PHYSICS,
           "Z = 0 on padded pairs: NaN gradient of the screening exponent"),
    Mutant("strain_not_on_shifts", "physnetjax/model.py",
           'shifts = jnp.einsum("pi,pij->pj", shifts, deformation[segments[dst_idx]])', "shifts = shifts",
           PERIODIC, "strain deforms positions but not the periodic image shifts"),
    Mutant("message_direction", "physnetjax/model.py",
           "dst_idx=dst_idx, src_idx=src_idx,", "dst_idx=src_idx, src_idx=dst_idx,",
           LEGACY + MESSAGES, "messages flow j → i along reversed edge vectors"),
    Mutant("strain_not_symmetrised", "physnetjax/model.py",
           "deformation = jnp.eye(3, dtype=positions.dtype) + 0.5 * (strain + jnp.swapaxes(strain, -1, -2))",
           "deformation = jnp.eye(3, dtype=positions.dtype) + strain", PERIODIC,
           "stress from the unsymmetrised strain derivative"),
    Mutant("half_list_check_disabled", "physnetjax/neighbors/checks.py",
           "if np.array_equal(_sorted_rows(forward), _sorted_rows(backward)):", "if True:", NEIGHBORS,
           "half lists accepted silently"),
    Mutant("all_pairs_check_disabled", "physnetjax/neighbors/checks.py",
           "short = np.nonzero(listed < n * (n - 1))[0]", "short = np.nonzero(listed < 0)[0]", NEIGHBORS,
           "bare Coulomb over a cutoff-limited list accepted silently"),
    Mutant("element_energies_minimum_norm", "physnetjax/data/reference.py",
           "if rank == len(present):", "if True:", ELEMENTS,
           "degenerate compositions get the minimum-norm split again (E0 ∝ count)"),
    Mutant("check_hydrogen_rule_inverted", "physnetjax/check/references.py",
           "e0[1] < e0[z]", "e0[1] > e0[z]", ELEMENTS,
           "check flags E0[H] above C/N/O/F instead of below"),
    Mutant("old_config_gets_new_zbl_default", "physnetjax/model.py",
           'cfg.setdefault("zbl_cutoff", None)', 'cfg.setdefault("zbl_cutoff", ZBL_CUTOFF_DEFAULT)', ZBL_DEFAULT,
           "a config without zbl_cutoff gets the new 2 Å default instead of the model cutoff"),
    Mutant("migration_takes_zbl_default", "physnetjax/checkpoint/legacy.py",
           'kwargs["zbl_cutoff"] = float(kwargs["cutoff"])', 'kwargs["zbl_cutoff"] = 2.0', ZBL_DEFAULT,
           "migrated legacy models switch ZBL off at 2 Å instead of their cutoff"),
    Mutant("ef_takes_zbl_default", "physnetjax/model.py",
           "    zbl_cutoff: float | None = None", "    zbl_cutoff: float | None = ZBL_CUTOFF_DEFAULT", ZBL_DEFAULT,
           "the legacy EF constructor gets the short ZBL default"),
    Mutant("kinetic_energy_half", "physnetjax/md/integrators.py",
           "return 0.5 * jnp.sum(momenta**2 / masses[:, None]) * AMU_A2_PER_FS2_IN_EV",
           "return jnp.sum(momenta**2 / masses[:, None]) * AMU_A2_PER_FS2_IN_EV", MD,
           "K = Σ p²/m without ½"),
    # -- spectroscopy, ensembles, thermostats, selection (2026-12-03) ---------------------------
    Mutant("reduced_mass_not_squared", "physnetjax/spectra/harmonic.py",
           "reduced_masses=1.0 / norms**2,", "reduced_masses=1.0 / norms,", HARMONIC,
           "reduced mass 1/|d_k| instead of 1/|d_k|²"),
    Mutant("zpe_without_half", "physnetjax/spectra/harmonic.py",
           "zero_point_energy=0.5 * CM1_IN_EV", "zero_point_energy=CM1_IN_EV", HARMONIC,
           "ZPE = Σ h c ν̃ without ½"),
    Mutant("zpe_counts_zero_modes", "physnetjax/spectra/harmonic.py",
           "frequencies[(eigenvalues > 0) & ~zero_modes]", "frequencies[eigenvalues > 0]", HARMONIC,
           "fragment motions and flat directions counted in the ZPE"),
    Mutant("modes_not_unweighted", "physnetjax/spectra/harmonic.py",
           "displacements = inv_sqrt_m[:, None] * (vibrational @ coefficients)",
           "displacements = vibrational @ coefficients", HARMONIC,
           "normal modes and intensities from mass-weighted instead of Cartesian displacements"),
    Mutant("dipole_derivative_axes_swapped", "physnetjax/spectra/harmonic.py",
           "np.transpose(np.asarray(dipole_jacobian, dtype=np.float64), (1, 2, 0))",
           "np.transpose(np.asarray(dipole_jacobian, dtype=np.float64), (1, 0, 2))", HARMONIC,
           "∂μ_b/∂R_ia stored as [i, b, a]"),
    Mutant("imaginary_sign_dropped", "physnetjax/spectra/harmonic.py",
           "return np.sign(eigenvalues) * SQRT_EV_PER_A2_AMU_IN_CM1", "return SQRT_EV_PER_A2_AMU_IN_CM1",
           HARMONIC, "imaginary frequencies reported as real ones"),
    Mutant("hessian_unsymmetrised", "physnetjax/spectra/harmonic.py",
           "0.5 * (hessian + hessian.T), positions, masses", "hessian, positions, masses", HARMONIC,
           "the autodiff Hessian not symmetrised"),
    Mutant("autocorrelation_circular", "physnetjax/spectra/autocorrelation.py",
           "size = _fast_length(2 * num_samples - 1)", "size = num_samples", SPECTRA_MD,
           "FFT correlation without zero padding: circular wrap-around"),
    Mutant("autocorrelation_pairs_off_by_one", "physnetjax/spectra/autocorrelation.py",
           'pairs = num_samples - lags if normalization == "unbiased"',
           'pairs = num_samples - lags + 1 if normalization == "unbiased"', SPECTRA_MD,
           "unbiased estimator divides lag k by T − k + 1"),
    Mutant("spectrum_lag_zero_twice", "physnetjax/spectra/autocorrelation.py",
           "(2.0 * transform - c[:1])", "(2.0 * transform)", SPECTRA_MD,
           "lag 0 counted twice in the even extension"),
    Mutant("spectrum_grid_stretched", "physnetjax/spectra/autocorrelation.py",
           "np.arange(size // 2 + 1) / (SPEED_OF_LIGHT_CM_PER_FS * size * timestep_fs)",
           "np.arange(size // 2 + 1) / (SPEED_OF_LIGHT_CM_PER_FS * (size - 1) * timestep_fs)", SPECTRA_MD,
           "wavenumber grid spacing 1/((L − 1) Δt c) instead of 1/(L Δt c)"),
    Mutant("hann_window_half_width", "physnetjax/spectra/autocorrelation.py",
           "np.cos(np.pi * np.arange(num_lags) / num_lags)", "np.cos(np.pi * np.arange(num_lags) / (2 * num_lags))",
           SPECTRA_MD, "Hann window over twice the correlation length"),
    Mutant("quantum_correction_inverted", "physnetjax/spectra/autocorrelation.py",
           "safe_x / -np.expm1(-safe_x)", "safe_x / np.expm1(safe_x)", SPECTRA_MD,
           "Q = x/(eˣ − 1), the inverse-detailed-balance factor"),
    Mutant("md_ir_orientation_third", "physnetjax/spectra/md_spectrum.py",
           "/ kt_amu * E2_PER_AMU_IN_KM_PER_MOL", "/ kt_amu * E2_PER_AMU_IN_KM_PER_MOL / 3", SPECTRA_MD,
           "MD IR spectrum with an extra orientational 1/3"),
    Mutant("ensemble_std_per_component", "physnetjax/ensemble/model.py",
           "squared = jnp.sum(squared, axis=-1)", "squared = jnp.mean(squared, axis=-1)", ENSEMBLE,
           "vector spreads as RMS over components instead of the RMS distance"),
    Mutant("ensemble_forces_std_uncalibrated", "physnetjax/ensemble/model.py",
           'result["forces_std"] = None if forces is None else calibration_scale * _rms_distance(forces',
           'result["forces_std"] = None if forces is None else _rms_distance(forces', ENSEMBLE,
           "the calibration scale left off the force spread"),
    Mutant("calibration_mean_ratio", "physnetjax/ensemble/calibration.py",
           "scale = float(np.sqrt(np.mean(np.sum(e**2, axis=1) / sigma**2)))",
           "scale = float(np.mean(np.sqrt(np.sum(e**2, axis=1)) / sigma))", CALIBRATION,
           "scale = mean |e|/σ instead of the maximum-likelihood RMS ratio"),
    Mutant("calibration_nll_without_dimension", "physnetjax/ensemble/calibration.py",
           "variance = scale**2 * sigma**2 / d", "variance = scale**2 * sigma**2", CALIBRATION,
           "NLL of a vector error with the whole spread on each component"),
    Mutant("spearman_ties_not_averaged", "physnetjax/ensemble/calibration.py",
           "ranks[order] = ((starts + 1 + ends) / 2.0)[group]", "ranks[order] = np.arange(1, x.shape[0] + 1)",
           CALIBRATION, "tied values get distinct ranks"),
    Mutant("csvr_cross_term_half", "physnetjax/md/thermostats.py",
           "+ 2.0 * r1 * jnp.sqrt(c * (1.0 - c) * kinetic * share))",
           "+ r1 * jnp.sqrt(c * (1.0 - c) * kinetic * share))", THERMOSTATS,
           "CSVR noise cross term without its factor 2 (wrong kinetic-energy variance)"),
    Mutant("csvr_one_degree_short", "physnetjax/md/thermostats.py",
           "rest = jnp.sum(normals[1:] ** 2)", "rest = jnp.sum(normals[2:] ** 2)", THERMOSTATS,
           "CSVR χ² over N_f − 2 instead of N_f − 1 normals (⟨K⟩ one degree short)"),
    Mutant("langevin_noise_not_squared", "physnetjax/md/integrators.py",
           "sigma = jnp.sqrt((1.0 - c * c) * state.masses * kT", "sigma = jnp.sqrt((1.0 - c) * state.masses * kT",
           LANGEVIN, "Langevin O step noise √(1 − c) instead of √(1 − c²)"),
    Mutant("barostat_without_g", "physnetjax/md/barostat.py",
           "g = state.masses.shape[0] - dof / 3.0", "g = 0.0", THERMOSTATS,
           "barostat drift without the g k_B T / V term of removed momentum"),
    Mutant("barostat_noise_halved", "physnetjax/md/barostat.py",
           "noise_scale = jnp.sqrt(2.0 * kT * mobility * dt / volume)",
           "noise_scale = jnp.sqrt(kT * mobility * dt / volume)", THERMOSTATS,
           "barostat noise variance halved (volume fluctuations too small)"),
    Mutant("barostat_heat_one_sided", "physnetjax/md/barostat.py",
           "heat = state.heat - kinetic_change - 0.5 * (work_before + work_after)",
           "heat = state.heat - kinetic_change - work_after", THERMOSTATS,
           "the cell move's work estimated from the new stress only"),
    Mutant("kabsch_allows_reflection", "physnetjax/learn/selection.py",
           "2.0 * (s[0] + s[1] + d * s[2])", "2.0 * (s[0] + s[1] + s[2])", SELECTION,
           "aligned RMSD over improper rotations: a mirror image counts as a copy"),
    Mutant("selection_ties_reversed", "physnetjax/learn/selection.py",
           'np.argsort(-spreads, kind="stable")', "np.argsort(spreads)[::-1]", SELECTION,
           "equal spreads taken last candidate first"),
    Mutant("normal_mode_amplitude_squared", "physnetjax/data/normal_modes.py",
           "np.sqrt(BOLTZMANN * temperature / eigenvalues)", "(BOLTZMANN * temperature / eigenvalues)",
           NORMAL_MODES, "normal-coordinate amplitude k_B T/λ instead of √(k_B T/λ)"),
    # -- training, evaluation, neighbor-list overflow, MD report, check (2026-12-03) ------------
    Mutant("loss_per_atom_not_divided", "physnetjax/train/loss.py",
           '"Ea": (e_err / labels["num_atoms"], e_mask),', '"Ea": (e_err, e_mask),', TRAIN,
           "the per-atom energy term is the per-molecule error"),
    Mutant("loss_force_label_mask_dropped", "physnetjax/train/loss.py",
           'f_err = jnp.where(f_mask, out["forces"] - labels["F"], 0.0)', 'f_err = out["forces"] - labels["F"]',
           TRAIN, "frames without force labels enter the force loss as zero forces"),
    Mutant("loss_kind_swapped", "physnetjax/train/loss.py",
           'index = 1 if kind == "mse" else 0', 'index = 0 if kind == "mse" else 1', TRAIN,
           "--loss mse minimises absolute errors and mae squared ones"),
    Mutant("metrics_rmse_without_root", "physnetjax/train/loss.py",
           'metrics[f"{name}_rmse"] = (sq_sum / count) ** 0.5', 'metrics[f"{name}_rmse"] = sq_sum / count', TRAIN,
           "validation RMSE reported as the MSE"),
    Mutant("ema_weights_swapped", "physnetjax/train/optim.py",
           "(decay * e + (1.0 - decay) * p)", "(decay * p + (1.0 - decay) * e)", TRAIN,
           "the EMA follows the raw weights with weight 1 − d instead of d"),
    Mutant("ema_without_warmup", "physnetjax/train/optim.py",
           "decay = jnp.minimum(ema_decay, (1.0 + t) / (10.0 + t))", "decay = ema_decay", TRAIN,
           "no EMA warm-up: early EMA weights stay at the initialisation"),
    Mutant("gradient_clipping_dropped", "physnetjax/train/optim.py",
           "return optax.chain(optax.clip_by_global_norm(config.clip_norm), opt)", "return opt", TRAIN,
           "--clip-norm ignored"),
    Mutant("bootstrap_without_replacement", "physnetjax/train/ensemble.py",
           ".choice(train_indices, size=len(train_indices))",
           ".choice(train_indices, size=len(train_indices), replace=False)", TRAIN_ENSEMBLE,
           "--bootstrap draws a permutation (every member sees every frame)"),
    Mutant("eval_rmse_is_mae", "physnetjax/eval/evaluate.py",
           '"rmse": float(np.sqrt((picked * picked).mean())),', '"rmse": float(np.abs(picked).mean()),', EVAL,
           "per-element force RMSE reported as the MAE"),
    Mutant("overflow_not_sticky", "physnetjax/neighbors/neighbor_list.py",
           "did_overflow=nbrs.did_overflow | overflow,", "did_overflow=overflow,", NEIGHBORS,
           "an overflow is forgotten by the next build that fits"),
    Mutant("overflow_ignores_bins", "physnetjax/neighbors/neighbor_list.py",
           "overflow = (num_pairs > nbrs.capacity) | (max_occupancy > slots)", "overflow = num_pairs > nbrs.capacity",
           NEIGHBORS, "a full cell bin drops atoms without an overflow"),
    Mutant("overflow_off_by_one", "physnetjax/neighbors/neighbor_list.py",
           "overflow = (num_pairs > nbrs.capacity) |", "overflow = (num_pairs > nbrs.capacity + 1) |", NEIGHBORS,
           "one pair beyond the capacity is dropped silently"),
    Mutant("triplet_overflow_not_sticky", "physnetjax/neighbors/neighbor_triplets.py",
           "did_overflow=triplets.did_overflow | too_many)", "did_overflow=too_many)", TRIPLETS,
           "a triplet-list overflow is forgotten by the next build that fits"),
    Mutant("drift_not_per_atom", "physnetjax/md/driver.py",
           "return 1e3 * slope / num_atoms, 1e3", "return 1e3 * slope, 1e3", MD_DRIVER,
           "energy drift reported per system, labelled per atom"),
    Mutant("check_fd_sign", "physnetjax/check/forces.py",
           "numeric = -(energies[0::2] - energies[1::2]) / (2.0 * step)",
           "numeric = (energies[0::2] - energies[1::2]) / (2.0 * step)", CHECK,
           "the check's finite-difference forces are +∂E/∂R"),
    Mutant("check_fd_one_sided_step", "physnetjax/check/forces.py",
           "numeric = -(energies[0::2] - energies[1::2]) / (2.0 * step)",
           "numeric = -(energies[0::2] - energies[1::2]) / step", CHECK,
           "the check's central difference divided by δ instead of 2δ"),
    Mutant("calculator_dipole_offset_dropped", "physnetjax/calculator.py",
           'self.results["dipole"] = np.asarray(host["dipoles"][0], dtype=np.float64) + dipole_offset',
           'self.results["dipole"] = np.asarray(host["dipoles"][0], dtype=np.float64)', CALCULATOR,
           "a charged molecule's dipole taken about its centroid, not the origin"),
    # -- data units, checkpoint integrity, the uncertainty stop (2026-12-03) ---------------------
    Mutant("dataset_force_unit_ignored", "physnetjax/data/dataset.py",
           'scale = {"E": e_fac, "F": f_fac, "D": d_fac, "Q": 1.0}',
           'scale = {"E": e_fac, "F": e_fac, "D": d_fac, "Q": 1.0}',
           DATA, "forces converted with the energy factor (hartree/bohr read as hartree/Å)"),
    Mutant("dataset_dipole_unit_ignored", "physnetjax/data/dataset.py",
           'scale = {"E": e_fac, "F": f_fac, "D": d_fac, "Q": 1.0}',
           'scale = {"E": e_fac, "F": f_fac, "D": 1.0, "Q": 1.0}',
           DATA, "--dipole-unit ignored"),
    Mutant("dataset_force_sign_ignored", "physnetjax/data/dataset.py",
           "return data if force_sign == 1 else dataclasses.replace(data, F=-data.F)", "return data",
           DATA + ("tests/test_data_sanity.py",),
           "--force-sign -1 ignored: gradients trained as forces"),
    Mutant("checkpoint_hash_unchecked", "physnetjax/checkpoint/format.py",
           'if _sha256(file) != expected["sha256"]:', "if False:", CHECKPOINT,
           "a parameter file altered in place (same size) loads silently"),
    Mutant("checkpoint_config_checksum_unchecked", "physnetjax/checkpoint/format.py",
           "if config_checksum(config) != expected:", "if False:", CHECKPOINT,
           "an edited config.json (cutoff, element energies) loads silently"),
    Mutant("md_first_uncertain_frame_trusted", "physnetjax/md/driver.py",
           "num_trusted = int(np.argmax(past[:num_good]))", "num_trusted = int(np.argmax(past[:num_good])) + 1",
           MD_DRIVER + ENSEMBLE, "the first frame past the uncertainty threshold is written as trusted"),
    # -- ensemble combination, close contacts, calculator stress, the learning loop, D3 (2026-12-03) -----
    Mutant("combine_fold_sign", "physnetjax/ensemble/combine.py",
           "shift = own - reference", "shift = reference - own", ENSEMBLE,
           "a member's element-energy difference folded into its bias with the wrong sign"),
    Mutant("close_contact_farther_kept", "physnetjax/md/close_contacts.py",
           "second.distance < first.distance", "second.distance > first.distance", CLOSE_CONTACTS,
           "the report keeps the farther of two close contacts"),
    Mutant("calculator_stress_sign", "physnetjax/calculator.py",
           'self.results["stress"] = full_3x3_to_voigt_6_stress(np.asarray(host["stress"][0], np.float64))',
           'self.results["stress"] = -full_3x3_to_voigt_6_stress(np.asarray(host["stress"][0], np.float64))',
           CALCULATOR + ("tests/test_pbc.py",), "ASE stress with the opposite sign"),
    Mutant("learn_new_frames_dropped", "physnetjax/learn/loop.py",
           "data = concatenate([data, new])", "data = data", LEARN,
           "a round's labelled frames never reach its training set"),
    Mutant("learn_retrains_from_scratch", "physnetjax/learn/loop.py",
           "init_from=None if init_from is None else str(init_from)", "init_from=None", LEARN,
           "every round trains a fresh model instead of continuing from the previous one"),
    Mutant("d3_without_c8", "physnetjax/physics/dispersion.py",
           'pair_energy = (parameters["s6"] * c6 / (r6 + f6) + parameters["s8"] * c8 / (r6 * r2 + f6 * f2))',
           'pair_energy = parameters["s6"] * c6 / (r6 + f6) + 0.0 * (parameters["s8"] * c8 / (r6 * r2 + f6 * f2))',
           DISPERSION, "D3(BJ) without its C8 term"),
    # -- D3 three-body term, check verdicts, MD temperature note, ensemble calibration (2026-12-03) ----
    Mutant("d3_three_body_sign", "physnetjax/physics/dispersion.py",
           'triangle = HARTREE * parameters["s9"]', 'triangle = -HARTREE * parameters["s9"]',
           DISPERSION + ("tests/test_dispersion_three_body.py",), "the Axilrod-Teller-Muto term with its sign flipped"),
    Mutant("check_ratio_limit_loose", "physnetjax/check/forces.py",
           "if ratio is None or abs(ratio - 1.0) <= limit:", "if ratio is None or abs(ratio - 1.0) <= 10 * limit:",
           CHECK, "check passes forces 2× their finite differences"),
    Mutant("md_temperature_note_never", "physnetjax/md/driver.py",
           "if abs(off) <= TEMPERATURE_NOTE_SIGMAS * scatter:", "if True:", MD_DRIVER,
           "a thermostatted run far from its target temperature reported without a note"),
    Mutant("trainer_calibrates_on_test", "physnetjax/train/loop.py",
           'valid_pred["F_pred"] - valid_pred["F_ref"], valid_pred["F_std"]',
           'test_pred["F_pred"] - test_pred["F_ref"], test_pred["F_std"]', TRAIN_ENSEMBLE,
           "the ensemble's calibration scale fitted on the test split"),
    Mutant("calibrate_counts_padding", "physnetjax/ensemble/calibrate_checkpoint.py",
           "real = np.arange(dataset.max_atoms)[None, :] < dataset.N[frames, None]",
           "real = np.arange(dataset.max_atoms)[None, :] <= dataset.N[frames, None]", ENSEMBLE + CALIBRATION,
           "ensemble calibrate counts one padded atom per frame"),
)

EXPLAINED = {
    "message_direction": (
        "equivalent on a full directed list: swapping dst and src in message passing turns every edge (i ← j, "
        "r_j − r_i) into (j ← i, r_j − r_i), i.e. the original network evaluated with every edge vector inverted, "
        "which is the geometry −R; the e3x network (no pseudotensors) is O(3)-invariant, so E and F are "
        "unchanged. Half lists, where it would matter, are refused by physnetjax.neighbors.checks"
    ),
    "zbl_padded_z": (
        "equivalent with the JAX in use: the guard gives padded pairs Z = 1 so that ∂(Z^a)/∂a = Z^a ln Z cannot "
        "be NaN at Z = 0, but JAX defines the derivative of 0^a as 0 and the padded pairs' energies are masked, "
        "so gradients stay finite without it; the guard stays as a defence, and "
        "test_physics::test_zbl_parameter_gradients_are_finite_with_padded_z0_atoms fails if that ever changes"
    ),
    "strain_not_symmetrised": (
        "equivalent: E is invariant under rotations, so ∂E/∂ε is already symmetric and the antisymmetric "
        "part of an unsymmetrised strain contributes nothing; no test can tell the two apart"
    ),
}
"""Survivors that cannot be killed, with the reason (checked by the runner's report)."""
