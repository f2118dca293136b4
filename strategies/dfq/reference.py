"""The reference row of the quantization table: the full-precision teacher (its test accuracy; nothing is trained).
The other reference, the 8-bit bound, is measured inside every student cell (``benchmark.dfq_runner``)."""
from __future__ import annotations

from benchmark.dfq_methods import DFQMethod, register_dfq_method


@register_dfq_method("teacher", family="gdfq", published="Teacher",
                     description="reference row: the full-precision teacher's test accuracy (trained once, cached)")
class Teacher(DFQMethod):
    needs_student = False
    synthesizes = False
    reference = True
