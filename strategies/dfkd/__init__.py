"""Data-free knowledge distillation: loss terms, synthesisers, the synthetic data pool and the student
training step.  Reuses ``strategies.rgal`` samplers and triplet losses (never the reverse).  Importing the package
registers every method in ``DFKD_METHODS``."""
from benchmark.dfkd_methods import DFKD_METHODS, DFKDContext, DFKDMethod
from benchmark.registry import import_submodules

# registration order = --list order; a new method is a new module here
import_submodules(__name__, __path__, first=("cmi", "deepinversion", "dfad_arvi", "generative", "reference", "rgal"))

__all__ = ["DFKD_METHODS", "DFKDContext", "DFKDMethod"]
