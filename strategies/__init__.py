"""Non-exemplar class-incremental strategies (PASS, SSRE) and the RGAL plugins (``strategies.rgal``).  Importing
the package registers its methods with the runner."""
from strategies import pass_method, ssre_method  # noqa: F401
