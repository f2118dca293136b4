"""Data-free knowledge distillation (issue 4): loss terms, synthesisers, the synthetic data pool and the student
training step.  Reuses ``strategies.rgal`` samplers and triplet losses (never the reverse)."""
