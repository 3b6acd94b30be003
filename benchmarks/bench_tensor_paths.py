"""Message-pass cost per degree combination: this tree's SparseMessagePass beside an older one's.

For each (input degree, basis degree, output degree) of a PhysNet message pass, times the
forward call, its gradient (the force pass) and the gradient of a function of that
gradient (the training step's force loss) on one aspirin-size batch (8 molecules of 21
atoms, 2,518 edges, 64 features), interleaved call by call in one process so that a change
of load hits both alike. "old" is ``physnetjax/message_pass.py`` at ``--baseline``, read with
``git show`` and imported as its own module; both get the same parameters and inputs, and
their outputs are checked to agree before anything is timed.

Usage: python benchmarks/bench_tensor_paths.py [--quick | --smoke] [--out DIR] [--baseline REF]
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from common import BENCHMARKS, interleaved_times, parse_args, publish, table

from physnetjax.message_pass import SparseMessagePass

REPOSITORY = BENCHMARKS.parent

CASES = [(0, 1, None), (1, 1, 0), (1, 1, None), (2, 2, None), (0, 3, None), (3, 3, 0), (3, 3, None)]
"""(input, basis, output) degrees; None = e3x's default max(input, basis). PhysNet's first pass is
(0, L, L), the middle ones (L, L, L), the last (L, L, 0), or (L, L, L) with ``correlation > 1``."""


def old_message_pass(ref: str):
    """``SparseMessagePass`` of ``physnetjax/message_pass.py`` at git ``ref``, imported as a separate module."""
    source = subprocess.run(["git", "show", f"{ref}:physnetjax/message_pass.py"], cwd=REPOSITORY,
                            capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "message_pass_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("message_pass_old", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Flax's dataclass transform looks the module up there
    spec.loader.exec_module(module)
    return module.SparseMessagePass


def timed_calls(layer_class, case, sizes):
    """Jitted forward, gradient and gradient-of-gradient calls of one layer on fixed random inputs."""
    num_atoms, num_edges, features = sizes
    degree, basis_degree, max_degree = case
    keys = jax.random.split(jax.random.PRNGKey(0), 5)
    x = jax.random.normal(keys[0], (num_atoms, 1, (degree + 1) ** 2, features))
    angular = jax.random.normal(keys[1], (num_edges, (basis_degree + 1) ** 2))
    radial = jax.random.normal(keys[2], (num_edges, 16))
    src = jax.random.randint(keys[3], (num_edges,), 0, num_atoms)
    dst = jnp.sort(jax.random.randint(keys[4], (num_edges,), 0, num_atoms))
    layer = layer_class(max_degree=max_degree)
    kwargs = dict(dst_idx=dst, src_idx=src, num_segments=num_atoms)
    params = layer.init(jax.random.PRNGKey(1), x, (angular, radial), **kwargs)

    def summed(p, x, a, r):
        return jnp.sum(jnp.sin(layer.apply(p, x, (a, r), **kwargs)))

    def gradient_norm(p, x, a, r):
        return sum(jnp.sum(g ** 2) for g in jax.grad(summed, argnums=(1, 2, 3))(p, x, a, r))

    functions = {"forward": jax.jit(summed), "gradient": jax.jit(jax.grad(summed, argnums=(1, 2, 3))),
                 "second order": jax.jit(jax.grad(gradient_norm))}
    inputs = (params, x, angular, radial)
    return {name: (lambda f=f: jax.block_until_ready(f(*inputs))) for name, f in functions.items()}, \
        functions["forward"](*inputs)


def main():
    args = parse_args(__doc__, lambda p: p.add_argument("--baseline", default="c66d127",
                                                        help="git ref of the old message pass"))
    sizes = {"full": (168, 2518, 64), "quick": (168, 2518, 32), "smoke": (12, 60, 4)}[args.mode]
    rounds = {"full": 30, "quick": 10, "smoke": 2}[args.mode]
    old_class = old_message_pass(args.baseline)
    rows, data = [], []
    for case in CASES:
        new_calls, new_value = timed_calls(SparseMessagePass, case, sizes)
        old_calls, old_value = timed_calls(old_class, case, sizes)
        np.testing.assert_allclose(float(new_value), float(old_value), rtol=1e-4)
        calls = {**{("new", k): v for k, v in new_calls.items()}, **{("old", k): v for k, v in old_calls.items()}}
        times = interleaved_times(calls, rounds)
        medians = {key: statistics.median(t["wall_s"]) * 1e3 for key, t in times.items()}
        label = "{} ⊗ {} → {}".format(case[0], case[1], max(case[:2]) if case[2] is None else case[2])
        row = [label]
        for part in ("forward", "gradient", "second order"):
            row += [medians[("old", part)], medians[("new", part)], medians[("old", part)] / medians[("new", part)]]
        rows.append(row)
        data.append({"case": label, "median_ms": {f"{who} {part}": value for (who, part), value in medians.items()}})
    columns = ["degrees"] + [f"{part} {what}" for part in ("fwd", "grad", "2nd")
                             for what in ("old ms", "new ms", "old/new")]
    title = (f"SparseMessagePass, {sizes[0]} atoms, {sizes[1]} edges, {sizes[2]} features "
             f"(old: {args.baseline})")
    publish("bench_tensor_paths", args, [table(title, "wall ms, median of interleaved calls", columns, rows)],
            {"sizes": sizes, "rounds": rounds, "baseline": args.baseline, "cases": data})


if __name__ == "__main__":
    main()
