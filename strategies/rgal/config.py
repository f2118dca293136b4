"""RGAL's configuration for class-incremental methods (RGAL paper Sec. 5.3, Eq. 17 and Eq. 5): the two declared
hyper-parameter sets -- ``RGALPrototypeParams`` for L'_g (prototype optimisation, names ``rgal_*``) and
``RGALTripletParams`` for L'_s (triplet loss on paired batches, names ``triplet_*`` / ``paired_*``) -- and the checks
that refuse a setting that would not act.  Any class-incremental method composes them with its own parameters
(``register_method(..., params=(PASSParams, RGALPrototypeParams, RGALTripletParams))``) and attaches the plugins with
``strategies.rgal.attach.RGALMixin``; PASS and SSRE do.  The data-free distillation RGAL (``strategies.dfkd.rgal``)
uses the same names for the same ideas (``rgal_sampler``, ``triplet_weight``, ...; its two sides share one sampler
window, so its window parameters carry no side prefix).

Defaults are the released code's (Sharpiless/RGAL, which produced the published numbers) and the paper's Sec. 5.3
("optimized ... for 10 steps with a learning rate of 0.001").  Parameters marked key-neutral were added after
results were committed; their defaults reproduce the behaviour those results were made with.
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.errors import BenchError
from benchmark.hparams import hp

SAMPLERS = ("focal", "distance", "random")


@dataclass(frozen=True)
class RGALPrototypeParams:
    """L'_g = -adv * L_adv + ntri * L_ntri + oh * L_oh on the drawn prototype samples (Eq. 17)."""

    rgal_steps: int = hp(10, "optimiser steps on each draw of prototype samples", "RGAL Sec. 5.3: 10 steps")
    rgal_lr: float = hp(1e-3, "learning rate of those steps", "RGAL Sec. 5.3: learning rate 0.001")
    rgal_optimizer: str = hp("adam", "optimiser of the prototype samples", "released code: Adam",
                             choices=("adam", "sgd"))
    rgal_adv: float = hp(1.0, "weight of L_adv (KL between the previous and the current head, maximised)",
                         "RGAL Eq. 17")
    rgal_ntri: float = hp(1.0, "weight of L_ntri (reversed triplet hinge among the samples)", "RGAL Eq. 3, 17")
    rgal_oh: float = hp(1.0, "weight of L_oh (the previous head's CE to each sample's class)", "RGAL Eq. 17")
    rgal_sampler: str = hp("focal", "negative sampler of L_ntri", "RGAL Sec. 3.4: focal weighted sampling",
                           choices=SAMPLERS)
    rgal_focal_lower: float = hp(0.5, "focal sampler: lower end of the normalised-distance window",
                                 "released code: 0.5 < d < 1.0")
    rgal_focal_upper: float = hp(1.0, "focal sampler: upper end of that window", "released code: 0.5 < d < 1.0")
    rgal_schedule: str = hp("step", "when samples are optimised: every step's draw, or a pool before each "
                            "phase / epoch", "RGAL Sec. 5.3 'before training' (both readings)",
                            choices=("step", "phase", "epoch"), key_neutral=True)
    rgal_pool_per_class: int = hp(20, "pool schedules: optimised samples kept per old class", "suite choice",
                                  low=1, key_neutral=True)
    rgal_margin: float = hp(0.2, "margin of L_ntri's hinge", "released code: margin 0.2", key_neutral=True)
    rgal_squared: bool = hp(False, "squared distances in L_ntri (the paper's Eq. 3 form)",
                            "released code: not squared", key_neutral=True)
    rgal_sample_on: str = hp("logits", "what the sampler measures distances on", "released code: the logits",
                             choices=("logits", "embedding"), key_neutral=True)
    rgal_distance_cutoff: float = hp(0.5, "distance sampler: distances below are clipped to this",
                                     "Wu et al. 2017, released code 0.5", key_neutral=True)
    rgal_nonzero_cutoff: float = hp(1.4, "distance sampler: negatives farther than this get weight 0",
                                    "Wu et al. 2017, released code 1.4", key_neutral=True)


@dataclass(frozen=True)
class RGALTripletParams:
    """L'_s = triplet_weight * L_tri on paired batches (Sec. 5.3 "an extra positive triplet loss", Eq. 5)."""

    triplet_weight: float = hp(0.1, "weight of L_tri in the training loss", "released code: 0.1")
    triplet_margin: float = hp(0.2, "margin of L_tri's hinge", "released code: margin 0.2")
    triplet_squared: bool = hp(False, "squared distances (the paper's Eq. 5 form)", "released code: not squared")
    triplet_sampler: str = hp("distance", "negative sampler of L_tri", "released code: distance weighted",
                              choices=("distance", "focal", "random"))
    triplet_embedding: str = hp("feature", "what L_tri acts on: pooled feature, logits, or the sum of both",
                                "released code: feature; RGAL Table 6: both", choices=("feature", "logits", "both"))
    triplet_sample_on: str = hp("logits", "what the sampler measures distances on", "released code: the logits",
                                choices=("logits", "embedding"))
    triplet_rotated_as_classes: bool = hp(False, "PASS: every rotated image with label 4y + k (else the unrotated "
                                          "images with y)", "suite choice")
    triplet_prototypes_as_negatives: bool = hp(False, "old-class prototypes join each batch as extra negatives",
                                               "suite option, not in the paper")
    paired_positive: str = hp("class", "each anchor's positive: another image of its class, or the same image "
                              "augmented again", "RGAL Sec. 3.4 (class); released loader (image)",
                              choices=("class", "image"))
    paired_anchor_fraction: float = hp(1.0, "share of the training samples drawn as anchors each epoch (0.5: the "
                                       "paired epoch costs a plain one)", "released code: 1.0", high=1.0)
    triplet_distance_cutoff: float = hp(0.5, "distance sampler: distances below are clipped to this",
                                        "Wu et al. 2017, released code 0.5", key_neutral=True)
    triplet_nonzero_cutoff: float = hp(1.4, "distance sampler: negatives farther than this get weight 0",
                                       "Wu et al. 2017, released code 1.4", key_neutral=True)
    triplet_focal_lower: float = hp(0.5, "focal sampler: lower end of the normalised-distance window",
                                    "released code: 0.5 < d < 1.0", key_neutral=True)
    triplet_focal_upper: float = hp(1.0, "focal sampler: upper end of that window", "released code: 0.5 < d < 1.0",
                                    key_neutral=True)


_DEFAULTS = {f: getattr(c, f) for c in (RGALPrototypeParams, RGALTripletParams)
             for f in c.__dataclass_fields__}


def _applies(prm: dict, name: str, applies: bool, when: str) -> None:
    """A parameter set away from its default where it has no effect would only make a new cell with the default's
    numbers: one-line error instead."""
    if not applies and prm[name] != _DEFAULTS[name]:
        raise BenchError(f"{name}={prm[name]} has no effect here: it applies only {when}")


def _applies_sampler(prm: dict, prefix: str) -> None:
    sampler = prm[f"{prefix}_sampler"]
    for name in ("focal_lower", "focal_upper"):
        _applies(prm, f"{prefix}_{name}", sampler == "focal", f"with {prefix}_sampler focal")
    for name in ("distance_cutoff", "nonzero_cutoff"):
        _applies(prm, f"{prefix}_{name}", sampler == "distance", f"with {prefix}_sampler distance")
    _applies(prm, f"{prefix}_sample_on", sampler != "random", f"with {prefix}_sampler focal or distance (random "
             "negatives ignore distances)")


def _applies_triplet(prm: dict, prefix: str, weight: str, names: tuple[str, ...]) -> None:
    """With the triplet term's weight at 0 its form and its sampler's settings shape nothing (the sampler itself is
    left alone: it names a method, e.g. ``pass+rgal-random``)."""
    for name in names + ("margin", "squared", "sample_on", "focal_lower", "focal_upper",
                         "distance_cutoff", "nonzero_cutoff"):
        _applies(prm, f"{prefix}_{name}", prm[weight] != 0, f"with {weight} != 0")


def check_prototype_params(prm: dict) -> None:
    """L'_g's parameters that would not act (one-line errors)."""
    _applies(prm, "rgal_pool_per_class", prm["rgal_schedule"] != "step", "with rgal_schedule phase or epoch")
    _applies_triplet(prm, "rgal", "rgal_ntri", ())
    _applies_sampler(prm, "rgal")


def check_triplet_params(prm: dict, stride: int) -> None:
    """L'_s's parameters that would not act (``stride`` 1: batches without rotations, e.g. SSRE's later phases)."""
    _applies(prm, "triplet_rotated_as_classes", stride > 1, "to rotated batches (PASS's)")
    _applies_triplet(prm, "triplet", "triplet_weight", ("embedding", "rotated_as_classes", "prototypes_as_negatives"))
    _applies_sampler(prm, "triplet")


def sampler_window(sampler: str, focal: tuple[float, float], distance: tuple[float, float]) -> dict:
    """A negative sampler's keyword arguments (``strategies.rgal.samplers``): focal ``(lower, upper)`` on the
    normalised distance, distance-weighted ``(cutoff, nonzero_loss_cutoff)``; the random sampler has none."""
    if sampler == "focal":
        return {"lower": focal[0], "upper": focal[1]}
    if sampler == "distance":
        return {"cutoff": distance[0], "nonzero_loss_cutoff": distance[1]}
    return {}


def sampler_kw(prm: dict, prefix: str) -> dict:
    """The window of side ``prefix`` (``rgal`` or ``triplet``) from a method's parameters."""
    return sampler_window(prm[f"{prefix}_sampler"], (prm[f"{prefix}_focal_lower"], prm[f"{prefix}_focal_upper"]),
                          (prm[f"{prefix}_distance_cutoff"], prm[f"{prefix}_nonzero_cutoff"]))
