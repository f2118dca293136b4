"""Non-exemplar class-incremental strategies (PASS; SSRE and the RGAL plugins to come) and, later, data-free
distillation.  Importing the package registers its methods with the runner."""
from strategies import pass_method  # noqa: F401
