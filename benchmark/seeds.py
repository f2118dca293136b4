"""Every random stream of a cell, seeded in one place from (cell seed, stream, phase).

Each stream gets its own generator, seeded from the cell's seed, the phase and a fixed offset per stream, so that a
stream draws the same numbers whether or not the phases before it were trained in this process (a resumed cell, a
phase 0 loaded from the cache) and whatever the other streams drew.  The offsets are the values the committed cells
were computed with: changing one changes every later number of the methods that use the stream.  Streams of different
methods may share an offset (UCIR's, MUC's and RGAL's 900): no cell runs two of them.
"""
from __future__ import annotations

# stream -> offset in ``seed * 1000 + phase + offset``
STREAMS = {
    "phase": 0,  # the runner: seed_everything and the training batches' order at the start of phase k
    "prototype_features": 500,  # PASS / SSRE: the augmented pass that computes class means and radius after a phase
    "prototype_noise": 700,  # PASS / SSRE: Gaussian prototype augmentation during a phase
    "balanced_finetuning": 800,  # EEIL: the balanced fine-tuning's batch order
    "class_balanced_finetuning": 900,  # UCIR: the class-balanced fine-tuning's batch order
    "side_classifiers": 900,  # MUC: stage 3, the side classifiers' batch order
    "rgal_prototypes": 900,  # RGAL L'_g: the prototype-optimisation draws of a phase
    "rgal_triplets": 950,  # RGAL L'_s: the triplet sampler of a phase
}
# RGAL's per-epoch pool (``rgal_schedule`` phase / epoch): stream -> offset in ``seed * 1e6 + phase * 1000 + 2 * epoch
# + offset``, so that a resumed epoch builds the same pool and picks the same samples
EPOCH_STREAMS = {"rgal_pool": 0, "rgal_pool_picks": 1}


def derive_seed(seed: int, stream: str, phase: int) -> int:
    """The seed of ``stream`` in phase ``phase`` of a cell seeded ``seed``."""
    return seed * 1000 + phase + STREAMS[stream]


def derive_epoch_seed(seed: int, stream: str, phase: int, epoch: int) -> int:
    """The seed of a per-epoch ``stream`` (``EPOCH_STREAMS``) in ``epoch`` of phase ``phase``."""
    return seed * 1_000_000 + phase * 1000 + epoch * 2 + EPOCH_STREAMS[stream]
