"""Data-free knowledge distillation (issue 4): loss terms, synthesisers, the synthetic data pool and the student
training step.  Reuses ``strategies.rgal`` samplers and triplet losses (never the reverse).  Importing the package
registers every method in ``DFKD_METHODS``."""
from strategies.dfkd import cmi, deepinversion, dfad_arvi, generative, reference, rgal  # noqa: F401  (registration)
from strategies.dfkd.base import DFKD_METHODS, DFKDContext, DFKDMethod

__all__ = ["DFKD_METHODS", "DFKDContext", "DFKDMethod"]
