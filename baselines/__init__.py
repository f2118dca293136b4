"""Class-incremental baselines, one module each; importing the package registers them with the runner.  A new
method is a new module here (``benchmark.registry.import_submodules`` imports every module of the package)."""
from benchmark.registry import import_submodules

# registration order = --list order; modules not named here follow in name order
import_submodules(__name__, __path__, first=("finetune", "lwf", "lwf_mc", "icarl", "ewc", "joint", "ucir", "eeil",
                                             "lwm", "muc"))
