"""physnetjax: PhysNet in JAX/Flax/e3x with an energy/force path that is right by construction."""

from physnetjax.model import EF, PhysNet

__version__ = "0.1.0"

__all__ = ["EF", "PhysNet", "__version__"]
