"""Non-exemplar class-incremental strategies (PASS, SSRE), RGAL plugins and data-free distillation (issues 3 and 4)."""
