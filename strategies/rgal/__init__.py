"""RGAL (Liang & Fu): triplet losses and negative samplers shared by class-incremental plugins and data-free
distillation, as small pure functions of tensors."""
