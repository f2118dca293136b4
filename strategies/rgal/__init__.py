"""RGAL (Liang & Fu): triplet losses and negative samplers shared by class-incremental plugins and data-free
distillation, as small pure functions of tensors."""
import importlib

# The Avalanche plugins, importable as ``from strategies.rgal import ...`` (the README's example) without making
# every user of the pure losses import Avalanche: loaded on first access (PEP 562).
_PLUGINS = {"PairedSamplingPlugin": "paired_sampling", "PrototypeOptimizationPlugin": "prototype_optimization",
            "TripletLossPlugin": "triplet_plugin"}
__all__ = list(_PLUGINS)


def __getattr__(name):
    if name in _PLUGINS:
        return getattr(importlib.import_module(f"{__name__}.{_PLUGINS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
