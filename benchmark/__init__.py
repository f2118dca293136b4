"""The framework of the suite: data sources, scenarios, models, augmentation, metrics, profiles, cells, store,
executor, runner and reports.  It never imports ``strategies`` or ``baselines``; they register into it."""
