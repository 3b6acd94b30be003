"""Profile of the energy+forces path: XLA cost analysis (FLOPs, bytes), achieved FLOP/s, where time goes.

Reference case: PhysNet features=32, max_degree=2, num_iterations=2, n_res=2, cutoff
6 Å, charges and ZBL, float32, weights initialised then perturbed with Gaussian noise
(σ = 0.2, so that the zero-initialised heads contribute), on a batch of B ethanol molecules (B = 32; ``--smoke``:
B = 2, features 8, 1 iteration). FLOPs and bytes are XLA's estimates from
``jax.jit(f).lower(...).compile().cost_analysis()`` of each timed function.

Achieved FLOP/s = XLA FLOPs / median time. The peak is an *estimate*: cores × clock
(``cpu MHz`` of /proc/cpuinfo) × single-precision FLOPs per cycle per core, taken as
64 with AVX-512 (two FMA pipes × 16 lanes × 2), 32 with AVX2+FMA, 8 otherwise; the
vCPUs may be hyperthreads and the clock may boost, so it is a rough upper bound.

Where time goes: each part is jitted on its own on the reference shapes and timed
(compile excluded, median (min–max) of repeats):

* ``E+F full``: the model call (energy and forces by ``value_and_grad``);
* ``E+F, no pair terms`` / ``charges only`` / ``ZBL only``: the same network with
  charges (head, correction, electrostatics, dipoles) and/or ZBL switched off (not
  with ``--smoke``);
* ``energy only``: the full model call returning only the energy (XLA removes the
  unused gradient, as the FLOP count shows);
* ``basis``: the radial and angular basis factors of all edges (forward);
* ``MessagePass k`` (fwd, fwd+bwd): the k-th message pass alone (filter Dense,
  tensor product, indexed sum) on the features it sees in the model, forward and
  forward with the gradient w.r.t. its inputs and basis.

Before/after: the same E+F call with the message passing built from e3x's own layers
(``e3x.nn.basis`` and ``e3x.nn.MessagePass``: the structure before the factored filter and
the sparse tensor product of :mod:`physnetjax.message_pass`; same parameters), timed in
the same process, and the largest difference of energies and forces between the two.

Writes ``bench_profile.json``.

Usage: python benchmarks/bench_profile.py [--quick | --smoke] [--out DIR]
"""

from __future__ import annotations

import functools
import re

import e3x
import flax.linen
import jax
import jax.numpy as jnp
import numpy as np

from bench_model import load_frames
from common import ms, parse_args, table, time_call, publish
from physnetjax import PhysNet, apply_batch, batch_molecules, init_params
from physnetjax.message_pass import SparseMessagePass, edge_basis_factors

PLAN = {"full": (32, 9), "quick": (32, 5), "smoke": (2, 2)}  # (molecules, repeats)


def peak_flops() -> dict:
    """Estimated single-precision peak of this CPU (see module docstring)."""
    text = open("/proc/cpuinfo").read()
    flags = set(re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split())
    mhz = float(re.search(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M).group(1))
    per_cycle = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= flags else 8
    cores = len(re.findall(r"^processor\s*:", text, re.M))
    return {"cores": cores, "mhz": mhz, "flops_per_cycle_per_core": per_cycle,
            "peak_flops": cores * mhz * 1e6 * per_cycle}


def measure(name, fn, args, repeats, executables=None) -> dict:
    """Compile ``fn`` for ``args``, time the compiled call and read XLA's FLOP and byte estimates.

    The compiled executable is stored in ``executables[name]`` when a dict is given.
    """
    compiled = jax.jit(fn).lower(*args).compile()
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):
        analysis = analysis[0]
    timing = time_call(lambda: jax.block_until_ready(compiled(*args)), repeats)
    if executables is not None:
        executables[name] = compiled
    return {"part": name, **timing, "flops": float(analysis.get("flops", 0.0)),
            "bytes": float(analysis.get("bytes accessed", 0.0))}


def message_pass_inputs(model, params, batch):
    """(name, feature shape, index kwargs) of each MessagePass call in the model's forward pass."""
    captured = []

    def interceptor(next_fun, args, kwargs, context):
        layers = (e3x.nn.MessagePass, SparseMessagePass)
        if isinstance(context.module, layers) and context.method_name == "__call__" and len(args) == 2:
            captured.append((context.module.name, args[0].shape, kwargs))
        return next_fun(*args, **kwargs)

    with flax.linen.intercept_methods(interceptor):
        apply_batch(model, params, batch)
    return captured


def perturbed(params, scale: float = 0.2):
    """Add Gaussian noise to the network weights (not the ZBL screening) so zero-initialised heads matter."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    return jax.tree_util.tree_unflatten(treedef, [
        leaf if "repulsion" in jax.tree_util.keystr(path) else leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
        for (path, leaf), k in zip(leaves, keys)])


class E3xLayersPhysNet(PhysNet):
    """PhysNet built from e3x's own layers: ``e3x.nn.basis`` and ``e3x.nn.MessagePass``.

    The structure before the optimisations (dense basis (P, 1, (L+1)², K), per-degree
    Dense over it, dense Clebsch–Gordan einsum). Same parameter tree as :class:`PhysNet`,
    so the same parameters apply to both.
    """

    def _atomic_features(self, atomic_numbers, displacements, edge_mask, dst_idx, src_idx):
        dtype = displacements.dtype
        basis = e3x.nn.basis(displacements, num=self.num_basis_functions, max_degree=self.max_degree,
                             radial_fn=e3x.nn.exponential_chebyshev,
                             cutoff_fn=functools.partial(e3x.nn.smooth_cutoff, cutoff=self.cutoff))
        basis = jnp.where(edge_mask[:, None, None, None], basis.astype(dtype), 0.0)
        x = e3x.nn.Embed(num_embeddings=self.max_atomic_number + 1, features=self.features, dtype=dtype,
                         param_dtype=self.param_dtype)(atomic_numbers)
        for iteration in range(self.num_iterations):
            last = iteration == self.num_iterations - 1
            x = e3x.nn.MessagePass(max_degree=0 if last else None, include_pseudotensors=False, dtype=dtype,
                                   param_dtype=self.param_dtype, name=f"MessagePass_{iteration}")(
                x, basis, dst_idx=dst_idx, src_idx=src_idx, num_segments=atomic_numbers.shape[0])
            x = self._refinement_block(x.astype(dtype))
        return e3x.nn.change_max_degree_or_type(x, max_degree=0, include_pseudotensors=False)


def main():
    args = parse_args(__doc__)
    molecules, repeats = PLAN[args.mode]
    features = 8 if args.mode == "smoke" else 32
    iterations = 1 if args.mode == "smoke" else 2
    config = dict(features=features, max_degree=2, num_iterations=iterations, n_res=iterations, cutoff=6.0)
    model = PhysNet(**config, charges=True, zbl=True)
    variants = {} if args.mode == "smoke" else {"no pair terms": PhysNet(**config, charges=False, zbl=False),
                                                "charges only": PhysNet(**config, charges=True, zbl=False),
                                                "ZBL only": PhysNet(**config, charges=False, zbl=True)}
    params = perturbed(init_params(model, 0))
    zs, rs = load_frames("ethanol", molecules)
    batch = jax.device_put(batch_molecules(zs, rs, model.cutoff, pair_cutoff=None))
    atoms, edges = int(np.sum(batch.atom_mask)), int(np.sum(batch.edge_mask))

    def full(p, b):
        return apply_batch(model, p, b)

    def energy_only(p, b):
        return apply_batch(model, p, b)["energy"]

    displacements = batch.positions[batch.src_idx] - batch.positions[batch.dst_idx]

    def basis(d):
        return edge_basis_factors(d, batch.edge_mask, num=model.num_basis_functions, max_degree=model.max_degree,
                                  cutoff=model.cutoff)

    executables = {}
    parts = [measure("E+F full (charges, ZBL)", full, (params, batch), repeats, executables),
             *[measure(f"E+F, {name}", functools.partial(apply_batch, variant), (init_params(variant, 0), batch),
                       repeats) for name, variant in variants.items()],
             measure("energy only (forward)", energy_only, (params, batch), repeats),
             measure("basis (forward)", basis, (displacements,), repeats)]
    edge_basis = basis(displacements)
    for name, shape, kwargs in message_pass_inputs(model, params, batch):
        x = jax.random.normal(jax.random.PRNGKey(0), shape, jnp.float32)
        layer_params = {"params": params["params"][name]}
        layer = SparseMessagePass(max_degree=0 if name == f"MessagePass_{model.num_iterations - 1}" else None)

        def forward(x, b, layer=layer, layer_params=layer_params, kwargs=kwargs):
            return layer.apply(layer_params, x, b, **kwargs)

        def backward(x, b, forward=forward):
            return jax.grad(lambda x, b: jnp.sum(forward(x, b)), argnums=(0, 1))(x, b)

        parts.append(measure(f"{name} (forward)", forward, (x, edge_basis), repeats))
        parts.append(measure(f"{name} (forward+backward)", backward, (x, edge_basis), repeats))

    e3x_model = E3xLayersPhysNet(**config, charges=True, zbl=True)
    before = measure("E+F full, e3x basis + MessagePass (before)", functools.partial(apply_batch, e3x_model),
                     (params, batch), repeats, executables)
    old = executables[before["part"]](params, batch)
    new = executables[parts[0]["part"]](params, batch)
    difference = {key: float(jnp.max(jnp.abs(new[key] - old[key]))) for key in ("energy", "forces")}
    difference.update({f"max_abs_{key}": float(jnp.max(jnp.abs(new[key]))) for key in ("energy", "forces")})
    parts.insert(1, before)

    peak = peak_flops()
    reference = parts[0]
    for part in parts:
        part["share_of_full"] = part["median_s"] / reference["median_s"]
        part["achieved_flops"] = part["flops"] / part["median_s"]
    summary = {"atoms": atoms, "edges": edges, "flops": reference["flops"], "bytes": reference["bytes"],
               "flops_per_atom": reference["flops"] / atoms, "flops_per_edge": reference["flops"] / edges,
               "achieved_flops": reference["achieved_flops"],
               "fraction_of_peak": reference["achieved_flops"] / peak["peak_flops"], **peak}
    timed = "each part jitted alone on the reference shapes; compile excluded; median (min–max) of repeats"
    tables = [
        table(f"Energy+forces profile: {molecules} ethanol ({atoms} atoms, {edges} edges), features {features}, "
              "max_degree 2, float32", "XLA cost analysis of the jitted E+F call; achieved = FLOPs / median time; "
              "peak estimated as cores × clock × FLOPs/cycle",
              ["FLOPs/call", "FLOPs/atom", "FLOPs/edge", "bytes/call", "achieved FLOP/s", "est. peak FLOP/s",
               "fraction of peak"],
              [[summary["flops"], summary["flops_per_atom"], summary["flops_per_edge"], summary["bytes"],
                summary["achieved_flops"], peak["peak_flops"], summary["fraction_of_peak"]]]),
        table("Where the time goes", timed,
              ["part", "ms (min–max)", "share of E+F", "MFLOP", "GFLOP/s"],
              [[p["part"], ms(p), p["share_of_full"], p["flops"] / 1e6, p["achieved_flops"] / 1e9] for p in parts]),
        table("Optimisation: factored filter and sparse Clebsch–Gordan tensor product in every message pass",
              "E+F call before (e3x basis + MessagePass) and after (physnetjax.message_pass), same parameters, "
              "same process; "
              "compile excluded; median (min–max); max |Δ| over the batch in eV and eV/Å, beside max |E|, max |F|",
              ["before ms", "after ms", "speedup", "MFLOP before", "MFLOP after", "max |ΔE|", "max |E|", "max |ΔF|",
               "max |F|"],
              [[ms(before), ms(reference), before["median_s"] / reference["median_s"], before["flops"] / 1e6,
                reference["flops"] / 1e6, difference["energy"], difference["max_abs_energy"], difference["forces"],
                difference["max_abs_forces"]]]),
    ]
    publish("bench_profile", args, tables,
            {"model": model.config(), "summary": summary, "parts": parts,
             "before_after_max_abs_difference": difference})


if __name__ == "__main__":
    main()
