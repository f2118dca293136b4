"""RGAL's two parts attached to a prototype-based class-incremental method (RGAL paper Sec. 5.3): one mixin that PASS
and SSRE (and any method with a ``PrototypeBank``, an ``OldModelHolder`` and a ``FeatureCapturePlugin``) share.

``RGALMixin.attach_rgal(prm, stride, label_scale)`` builds L'_g (``PrototypeOptimizationPlugin``, when ``use_g``) and
L'_s (``TripletLossPlugin`` + ``PairedSamplingPlugin``, when ``use_s``) from the parameters declared in
``strategies.rgal.config`` and returns the plugins to put in the strategy; each part owns a generator that the suite
plugin checkpoints.  ``seed_rgal(k)`` seeds them per phase (``benchmark.seeds`` streams ``rgal_prototypes`` and
``rgal_triplets``); ``rgal_state`` / ``load_rgal_state`` carry the prototype movement figures across a resume.
The method must provide ``bank``, ``old``, ``capture``, ``model``, ``ctx`` and ``suite_plugin`` before attaching.
"""
from __future__ import annotations

import torch

from benchmark.errors import BenchError
from benchmark.seeds import derive_seed
from strategies.rgal.config import check_prototype_params, check_triplet_params, sampler_kw


class RGALMixin:
    use_g = use_s = False  # which of RGAL's parts a registered method has

    @classmethod
    def later_cost_scale(cls, params: dict) -> float:
        """The registered costs of methods with paired sampling assume the released code's doubled epoch (every
        sample an anchor); ``paired_anchor_fraction`` < 1 draws fewer anchors."""
        return params["paired_anchor_fraction"] if cls.use_s else 1.0

    def attach_rgal(self, prm: dict, stride: int = 4, label_scale: int = 4) -> list:
        """The RGAL plugins of this method (empty without RGAL); ``stride`` / ``label_scale`` 4 for PASS's rotated
        batches and head, 1 for SSRE's later phases."""
        plugins = []
        if self.use_g:
            plugins.append(self._prototype_optimization(prm, label_scale))
        if self.use_s:
            plugins.extend(self._triplet_loss(prm, stride, label_scale))
        return plugins

    def _prototype_optimization(self, prm: dict, label_scale: int):
        """L'_g: the prototype samples are optimised before the prototype loss (every step's draw, or a pool built
        before each phase / epoch: ``rgal_schedule``)."""
        check_prototype_params(prm)
        from strategies.rgal.prototype_optimization import PrototypeOptimizationPlugin

        if prm["rgal_pool_per_class"] < 1:
            raise BenchError(f"rgal_pool_per_class must be at least 1, not {prm['rgal_pool_per_class']}")
        self.rgal_gen = torch.Generator()
        self.suite_plugin.generators["rgal_g"] = self.rgal_gen
        kw = {"sampler_kw": sampler_kw(prm, "rgal"), "margin": prm["rgal_margin"], "squared": prm["rgal_squared"]}
        self.rgal_g = PrototypeOptimizationPlugin(
            self.bank, self.old, lambda e: self.model.head(e), label_scale=label_scale,
            schedule=prm["rgal_schedule"], pool_per_class=prm["rgal_pool_per_class"], seed=self.ctx.seed,
            epoch_fn=lambda: self.suite_plugin.epoch, steps=prm["rgal_steps"], lr=prm["rgal_lr"],
            optimizer=prm["rgal_optimizer"], w_adv=prm["rgal_adv"], w_ntri=prm["rgal_ntri"], w_oh=prm["rgal_oh"],
            sampler=prm["rgal_sampler"], generator=self.rgal_gen, triplet_kw=kw, sample_on=prm["rgal_sample_on"])
        self.suite_plugin.stateful["rgal_g"] = self.rgal_g
        return self.rgal_g

    def _triplet_loss(self, prm: dict, stride: int, label_scale: int) -> list:
        """L'_s: ``triplet_weight * L_tri`` on the unrotated embeddings of paired-sampled batches."""
        check_triplet_params(prm, stride)
        from strategies.rgal.paired_sampling import PairedSamplingPlugin
        from strategies.rgal.triplet_plugin import TripletLossPlugin

        self.triplet_gen = torch.Generator()
        self.suite_plugin.generators["rgal_s"] = self.triplet_gen
        self.rgal_s = TripletLossPlugin(
            self.capture, weight=prm["triplet_weight"], stride=stride, label_scale=label_scale,
            rotated_as_classes=prm["triplet_rotated_as_classes"], embedding=prm["triplet_embedding"],
            sample_on=prm["triplet_sample_on"], sampler=prm["triplet_sampler"], margin=prm["triplet_margin"],
            squared=prm["triplet_squared"], head=lambda e: self.model.head(e), bank=self.bank,
            prototypes_as_negatives=prm["triplet_prototypes_as_negatives"], generator=self.triplet_gen,
            sampler_kw=sampler_kw(prm, "triplet"))
        return [self.rgal_s, PairedSamplingPlugin(prm["paired_positive"],
                                                  anchor_fraction=prm["paired_anchor_fraction"])]

    def seed_rgal(self, k: int) -> None:
        """Seeds the RGAL parts' generators at the start of phase ``k``."""
        if self.use_g:
            self.rgal_gen.manual_seed(derive_seed(self.ctx.seed, "rgal_prototypes", k))
        if self.use_s:
            self.triplet_gen.manual_seed(derive_seed(self.ctx.seed, "rgal_triplets", k))

    def rgal_results(self) -> dict:
        """``result.json``'s ``extra``: L'_g's mean prototype movement per phase."""
        return {"prototype_movement_per_phase": list(self.rgal_g.movement)} if self.use_g else {}

    def rgal_state(self) -> dict:
        return {"movement": list(self.rgal_g.movement) if self.use_g else []}

    def load_rgal_state(self, st: dict) -> None:
        if self.use_g:
            self.rgal_g.movement = list(st["movement"])
