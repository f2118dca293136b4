"""IntraQ (Zhong et al., CVPR 2022; official code zysxmu/IntraQ), with and without RGAL.

Three stages, as the official pipeline runs them (``data_generate/`` then ``main_direct.py`` / ``trainer_direct.py``):

1. warm-up epochs (``calibration_images``): a GDFQ generator at batch 16
   (``strategies.dfq.gdfq.ConditionalGeneratorStep``, CE + 0.1 BNS) feeds the quantized student, whose activation
   ranges track; the student is not trained.  The official trainer does this with a fresh GDFQ generator, not with
   IntraQ's images.
2. ``prepare``: the fixed synthetic set (``strategies.dfq.intraq_synthesis.synthesize_batch``: BN statistics + soft
   inception loss + marginal distance constraint + local object reinforcement), ``n_images`` images in batches of
   ``synth_batch``, each optimised ``synth_steps`` Adam steps, labels uniform at random; the class centres of each
   batch are those of every image made before it (the official groups load the earlier groups' pickles).  The set
   depends only on the teacher, the synthesis settings and the seed, so cells of other bit-widths share it through
   the cache (``artefact_path``).  The official stage 1 sets no seed; here the set is drawn from the cell's seed.
3. training epochs: batches of the set (reshuffled every pass, last partial batch dropped, as the official
   DataLoader), each image random-resized-cropped (area 0.5-1) and flipped, the loss ``alpha * T^2 * KL + CE`` with
   the KL per image (``batchmean``) at T 20, alpha 20, against the teacher's logits of the same augmented images.

``intraq+rgal`` (RGAL Sec. 5.2, Table 12-13; ``strategies.dfq.rgal_terms``): the pixel optimisation adds ``adv *
(-L_adv) + tri_g * L_ntri`` against the quantized student (after its warm-up, ranges frozen), and the student loss
``L_tri``.  Because the synthesis then depends on the quantized student, that set is made per cell (not shared).
``intraq+rgal-g`` is Table 13's middle row (IntraQ + L'_g): the synthesis side only (no student-side parameter).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from benchmark import store
from benchmark.augment import random_flip, random_resized_crop
from benchmark.cells import stable_hash
from benchmark.dfq_methods import DFQMethod, register_dfq_method
from benchmark.errors import BenchError
from benchmark.hparams import hp
from strategies.dfq.gdfq import ConditionalGeneratorStep, GeneratorParams, QuantKDParams, student_objective
from strategies.dfq.intraq_synthesis import ClassCentres, synthesize_batch
from strategies.dfq.rgal_terms import RGALQuantParams, RGALQuantTerms
from strategies.rgal.relation import RGALRelationParams


@dataclass(frozen=True)
class IntraQParams:
    """IntraQ's synthetic set (``run_generate_cifar100.sh``, ``distill_data.py``) and its training augmentation."""

    n_images: int = hp(5120, "images of the fixed synthetic set", "4 groups x 5 batches x 256", low=1)
    synth_batch: int = hp(256, "images optimised together", "--batch_size 256", low=1)
    synth_steps: int = hp(1000, "Adam steps per synthesis batch", "distill_data.py: 500 * 2", low=1)
    synth_lr: float = hp(0.5, "Adam learning rate of the pixels", "distill_data.py: 0.5")
    target_low: float = hp(0.6, "soft inception loss: lowest target probability", "CIFAR-100 --targetPro 0.6")
    margin_lower: float = hp(0.02, "marginal distance: smallest cosine distance to the class centre",
                             "CIFAR-100 --cosineMargin 0.02")
    margin_upper: float = hp(1.0, "marginal distance: largest cosine distance to the class centre",
                             "CIFAR-100 --cosineMargin_upper 1.0")
    lor_scale: float = hp(0.5, "local object reinforcement: smallest crop area", "--augMargin 0.5")
    train_crop_scale: float = hp(0.5, "training augmentation: smallest random-resized-crop area",
                                 "main_direct.py: RandomResizedCrop(scale=(0.5, 1.0))")
    calib_batch: int = hp(16, "batch of the warm-up generator that calibrates the ranges",
                          "trainer_direct.py: 16", low=1)


_SYNTHESIS_KEYS = ("n_images", "synth_batch", "synth_steps", "synth_lr", "target_low", "margin_lower",
                   "margin_upper", "lor_scale")
_INTRAQ = dict(params=(QuantKDParams, GeneratorParams, IntraQParams), published="IntraQ",
               defaults={"alpha": 20.0, "kl_reduction": "batchmean"},
               description="IntraQ (Zhong et al.): fixed pixel-optimised images (BN statistics, soft inception loss, "
                           "marginal distance, local object reinforcement), quantized student fine-tuned on them")


@register_dfq_method("intraq", family="intraq", **_INTRAQ)
class IntraQ(DFQMethod):
    rgal = False
    student_side = True  # with ``rgal``: L'_s (L_tri) in the student's loss, switched by ``rgal_student``
    synthesizes = False  # the images are made once, in ``prepare``

    def __init__(self, ctx):
        super().__init__(ctx)
        self.g = ConditionalGeneratorStep(self, self.p)
        self.terms = RGALQuantTerms(self, student_side=self.student_side) if self.rgal else None
        self.centres = ClassCentres(ctx.n_classes, ctx.teacher.embed_dim)
        # the set's own generator, seeded from the cell's before anything else draws from it: the same set whatever
        # the bit-width
        self.synth_gen = torch.Generator(device=self.gen.device)
        self.synth_gen.manual_seed(int(torch.randint(2 ** 62, (1,), generator=self.gen, device=self.gen.device)))
        self.made: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.images = self.labels = None
        self.perm, self.cursor = None, 0
        self.synthesis = {"seconds": 0.0, "source": "made"}

    @staticmethod
    def artefact_key(cfg: dict) -> str | None:
        from benchmark.methods import full_params
        from benchmark.dfq_methods import DFQ_METHODS

        if DFQ_METHODS.get(cfg["method"]).rgal:
            return None
        p = full_params(cfg["method"], cfg["method_params"], DFQ_METHODS)
        return stable_hash({"what": "intraq-images", "teacher": cfg["teacher_key"] or cfg["teacher_checkpoint_sha256"],
                            "synthesis": {k: p[k] for k in _SYNTHESIS_KEYS}, "seed": cfg["seed"],
                            "device_type": cfg["device_type"], "torch_threads": cfg.get("torch_threads"),
                            "precision": cfg["quant"].get("precision", "fp32"),
                            "deterministic": cfg.get("deterministic", False),
                            **({"image_size": cfg["image_size"]} if cfg.get("image_size") else {})})

    # -- warm-up: ranges from a batch-16 GDFQ generator ----------------------------------------------------------
    def calibration_images(self) -> torch.Tensor:
        return self.g.step(int(self.p["calib_batch"]))[0]

    # -- the fixed set -------------------------------------------------------------------------------------------
    def prepare(self, save) -> dict:
        """The set: already here, from its file (the cache shared across bit-widths, or this cell's own set, which a
        resumed cell reloads), or made (resuming a partial synthesis).  Once made, the set lives in its file only:
        the cell's checkpoints do not carry it (5,120 ImageNet images are 3 GB), nor the warm-up generator."""
        if self.images is not None:
            return self.synthesis
        path = self.ctx.artefact_path
        if path is not None and path.is_file():
            ck = store.load_torch(path, path.stem, "IntraQ image set")
            self.images, self.labels = ck["images"], ck["labels"]
            # this cell's own set (a resumed cell that made it) keeps its source; another cell's is the cache's
            own = bool(self.synthesis.get("images"))
            self.synthesis = {**ck["synthesis"], "source": self.synthesis["source"] if own else f"cache {path.name}"}
            return self.synthesis
        if self.synthesis.get("images"):  # made and saved by an earlier run of this cell, and the file is gone
            raise BenchError(f"IntraQ's image set {path} is gone, and this cell has trained on it; delete the cell's "
                             f"checkpoint.pt to run it again from the start")
        p = self.p
        n, b = int(p["n_images"]), int(p["synth_batch"])
        extra = self.terms.synthesis if self.terms else None
        while len(self.made) < math.ceil(n / b):
            t0 = time.time()
            size = min(b, n - len(self.made) * b)
            y = torch.randint(self.ctx.n_classes, (size,), generator=self.synth_gen,
                              device=self.synth_gen.device).to(self.device)
            x = synthesize_batch(self.teacher, y, self.centres, self.synth_gen, self.ctx.mean, self.ctx.std,
                                 self.ctx.image_shape, int(p["synth_steps"]), p["synth_lr"], target_low=p["target_low"],
                                 lower=p["margin_lower"], upper=p["margin_upper"], lor_scale=p["lor_scale"],
                                 extra=extra)
            with torch.no_grad():
                self.centres.add(self.teacher.forward_features(x)[1], y)
            self.made.append((x.cpu(), y.cpu()))
            self.synthesis["seconds"] += time.time() - t0
            save()
        self.images = torch.cat([x for x, _ in self.made])
        self.labels = torch.cat([y for _, y in self.made])
        self.synthesis["images"] = len(self.labels)
        if path is not None:
            store.save_torch(path, {"key": path.stem, "images": self.images, "labels": self.labels,
                                    "synthesis": self.synthesis})
            self.made = []
        return self.synthesis

    # -- training --------------------------------------------------------------------------------------------------
    def _indices(self, size: int) -> torch.Tensor:
        """The next batch of a reshuffled pass (a pass drops its last partial batch, as the official loader)."""
        n = len(self.labels)
        size = min(size, n)
        if self.perm is None or self.cursor + size > n:
            self.perm = torch.randperm(n, generator=self.gen, device=self.gen.device).cpu()
            self.cursor = 0
        idx = self.perm[self.cursor:self.cursor + size]
        self.cursor += size
        return idx

    def student_loss(self):
        idx = self._indices(self.ctx.recipe.synthesis_batch)
        x, y = self.images[idx].to(self.device), self.labels[idx].to(self.device)
        x = random_flip(random_resized_crop(x, self.gen, scale=(self.p["train_crop_scale"], 1.0)), self.gen)
        if self.ctx.recipe.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            t_logits = self.teacher(x)
        return student_objective(self, x, y, t_logits), len(y)

    def extra_results(self) -> dict:
        return {"synthesis": self.synthesis}

    def state_dict(self) -> dict:
        return {"g": self.g.state_dict() if self.images is None else None,  # the warm-up is over once the set exists
                "centres": self.centres.state_dict(), "made": self.made,
                "synth_gen": self.synth_gen.get_state(), "perm": self.perm, "cursor": self.cursor,
                "synthesis": self.synthesis}

    def load_state_dict(self, state: dict) -> None:
        if state["g"] is not None:
            self.g.load_state_dict(state["g"])
        self.centres.load_state_dict(state["centres"])
        self.made, self.perm, self.cursor = list(state["made"]), state["perm"], state["cursor"]
        self.synth_gen.set_state(state["synth_gen"])
        self.synthesis = dict(state["synthesis"])  # ``prepare`` completes or reloads the set


# the student side's switch and its L_tri-only settings are not parameters of this method (no dead flags)
@register_dfq_method("intraq+rgal-g", family="intraq", rgal_baseline="intraq",
                     exclude=("rgal_student", "triplet_weight", "triplet_sampler", "s_labels"),
                     **{**_INTRAQ, "params": (*_INTRAQ["params"], RGALQuantParams, RGALRelationParams),
                        "published": "IntraQ+L'_g",
                        "description": "IntraQ + RGAL's synthesis side only (Table 13's L'_g): -L_adv + L_ntri in "
                                       "the pixel optimisation, the student's loss IntraQ's"})
class IntraQRGALSynthesis(IntraQ):
    rgal = True
    student_side = False


@register_dfq_method("intraq+rgal", family="intraq", rgal_baseline="intraq",
                     **{**_INTRAQ, "params": (*_INTRAQ["params"], RGALQuantParams, RGALRelationParams),
                        "published": "IntraQ+RGAL",
                        "description": "IntraQ + RGAL: -L_adv + L_ntri in the pixel optimisation (against the "
                                       "quantized student), L_tri in the student's loss"})
class IntraQRGAL(IntraQ):
    rgal = True
