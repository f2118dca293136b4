"""Data-free quantization (``--task dfq``): GDFQ and IntraQ, each with and without RGAL's relation terms, and the
teacher's reference row.  Reuses ``strategies.rgal`` (relation terms) and ``strategies.dfkd`` (the adversarial term);
importing the package registers every method in ``DFQ_METHODS``."""
from benchmark.dfq_methods import DFQ_METHODS, DFQContext, DFQMethod
from benchmark.registry import import_submodules

# registration order = --list order
import_submodules(__name__, __path__, first=("reference", "gdfq", "intraq"))

__all__ = ["DFQ_METHODS", "DFQContext", "DFQMethod"]
