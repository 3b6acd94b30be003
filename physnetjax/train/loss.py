"""Masked error sums, the weighted loss, and validation metrics.

For each label k ∈ {E, E/atom, F, D, Q, σ, σ·V/N} a batch yields Σ f(pred − ref) over the
entries that carry the label (padding and missing labels excluded, never
zero-filled) and the number of such entries. With f = square (MSE, default) or
abs (MAE, as PhysNet) the loss is::

    L = w_E · S_E / n_E + w_F · S_F / n_F + w_D · S_D / n_D + w_Q · S_Q / n_Q + w_σ · S_W / n_W

where S/n are taken over the *global* batch (all devices), so the loss does not
depend on how the batch is split. E is the energy per molecule (eV), or per atom
(eV/atom) with ``per_atom_energy``; F are force components (eV/Å); D dipole
components (e·Å); Q the sum of the predicted charges against the total charge
(e), which the PhysNet charge correction makes exact, so its default weight is 0.
The stress σ (eV/Å³, periodic frames with a stress label) enters the loss as the
virial per atom W = σ · V / N (eV/atom; V the cell volume, N its atom count), whose
errors compare with per-atom energy errors whatever the cell's size and density
(MACE weighs its virials the same way); the metrics report the stress components
themselves (S, eV/Å³).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from physnetjax.neighbors import apply_batch

TERMS = ("E", "Ea", "F", "D", "Q", "S", "W")
"""Error terms: energy per molecule, energy per atom, force components, dipole components, total charge, stress
components (eV/Å³) and virial-per-atom components σ · V / N (eV/atom)."""
PREDICTIONS = ("pred_E", "pred_F", "pred_D", "pred_S")
"""Keys of the predictions among the error sums (``pred_D`` only for a charge model, ``pred_S`` only for a periodic
batch)."""


def error_sums(model, params, batch, labels) -> dict:
    """Σ|err|, Σerr², count for every term on one device batch (no device axis).

    Returns {term: (abs_sum, sq_sum, count)} of scalars, plus predictions under
    "pred_E" (B,), "pred_F" (N, 3), for a charge model "pred_D" (B, 3) (e·Å, about the origin of the
    batch's positions) and for a periodic batch "pred_S" (B, 3, 3) eV/Å³.
    """
    return sums_from_outputs(apply_batch(model, params, batch), labels, model.charges)


def sums_from_outputs(out: dict, labels: dict, charges: bool) -> dict:
    """:func:`error_sums` of model outputs ``out`` (energy (B,), forces (N, 3), dipoles, sum_charges, stress);
    the dipole and charge terms only when ``charges``, the stress terms only for a periodic batch (``out['stress']``
    (B, 3, 3) and labels ``S`` (B, 3, 3) eV/Å³, ``S_mask`` (B,), ``volume_per_atom`` (B,) Å³)."""
    dtype = out["energy"].dtype
    e_mask = labels["E_mask"]
    e_err = jnp.where(e_mask, out["energy"] - labels["E"], 0.0)
    f_mask = jnp.broadcast_to(labels["F_mask"][:, None], labels["F"].shape)
    f_err = jnp.where(f_mask, out["forces"] - labels["F"], 0.0)
    errors = {
        "E": (e_err, e_mask),
        "Ea": (e_err / labels["num_atoms"], e_mask),
        "F": (f_err, f_mask),
    }
    if "S" in labels and out.get("stress") is not None:
        s_mask = jnp.broadcast_to(labels["S_mask"][:, None, None], labels["S"].shape)
        s_err = jnp.where(s_mask, out["stress"] - labels["S"], 0.0)
        errors["S"] = (s_err, s_mask)
        errors["W"] = (s_err * labels["volume_per_atom"][:, None, None], s_mask)
    if charges:
        d_mask = jnp.broadcast_to(labels["D_mask"][:, None], labels["D"].shape)
        errors["D"] = (jnp.where(d_mask, out["dipoles"] - labels["D"], 0.0), d_mask)
        errors["Q"] = (jnp.where(labels["Q_mask"], out["sum_charges"] - labels["Q"], 0.0), labels["Q_mask"])
    sums = {}
    for term in TERMS:
        if term in errors:
            err, mask = errors[term]
            sums[term] = (jnp.sum(jnp.abs(err)), jnp.sum(err * err), jnp.sum(mask).astype(dtype))
        else:
            zero = jnp.zeros((), dtype)
            sums[term] = (zero, zero, zero)
    sums["pred_E"] = out["energy"]
    sums["pred_F"] = out["forces"]
    if charges:
        sums["pred_D"] = out["dipoles"]
    if "S" in errors:
        sums["pred_S"] = out["stress"]
    return sums


def global_error_sums(model, params, batch, labels) -> dict:
    """:func:`error_sums` over the leading device axis; term sums are totalled over devices."""
    per_device = jax.vmap(lambda b, l: error_sums(model, params, b, l))(batch, labels)
    totals = {t: tuple(jnp.sum(x) for x in per_device[t]) for t in TERMS}
    for key in PREDICTIONS:
        if key in per_device:
            totals[key] = per_device[key]
    return totals


def loss_from_sums(sums: dict, weights: dict, kind: str):
    """Weighted loss from global error sums; ``kind`` "mse" or "mae"; ``weights`` {term: w}."""
    index = 1 if kind == "mse" else 0
    total = 0.0
    for term, weight in weights.items():
        if weight:
            total = total + weight * sums[term][index] / jnp.maximum(sums[term][2], 1.0)
    return total


def loss_weights(config) -> dict:
    """{term: weight} from a :class:`TrainConfig` (energy per atom replaces per molecule if asked)."""
    energy_term = "Ea" if config.per_atom_energy else "E"
    return {energy_term: config.energy_weight, "F": config.forces_weight,
            "D": config.dipole_weight, "Q": config.charge_weight, "W": config.stress_weight}


def metrics_from_totals(totals: dict) -> dict:
    """MAE/RMSE per term from host-accumulated {term: [abs_sum, sq_sum, count]} (float64).

    Keys: energy_mae/rmse (eV), energy_per_atom_mae/rmse (eV/atom), forces_mae/rmse
    (eV/Å), dipole_mae/rmse (e·Å), charge_mae/rmse (e), stress_mae/rmse (eV/Å³), virial_per_atom_mae/rmse
    (eV/atom); terms without labels (or absent from ``totals``) are omitted.
    """
    names = {"E": "energy", "Ea": "energy_per_atom", "F": "forces", "D": "dipole", "Q": "charge", "S": "stress",
             "W": "virial_per_atom"}
    metrics = {}
    for term, name in names.items():
        abs_sum, sq_sum, count = totals.get(term, (0.0, 0.0, 0))
        if count > 0:
            metrics[f"{name}_mae"] = abs_sum / count
            metrics[f"{name}_rmse"] = (sq_sum / count) ** 0.5
    return metrics
