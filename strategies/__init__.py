"""Non-exemplar class-incremental strategies (PASS, SSRE) and the RGAL plugins (``strategies.rgal``).  Importing
the package registers its methods with the runner; a new method is a new module here (every module of the package is
imported, ``benchmark.registry.import_submodules``)."""
from benchmark.registry import import_submodules

import_submodules(__name__, __path__, first=("pass_method", "ssre_method"))
