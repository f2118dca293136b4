"""The declared hyper-parameters of the data-free distillation methods (``benchmark.hparams``), in the pieces they
share.  A method registers the pieces it has (``register_dfkd_method(..., params=(RoundParams, ...))``) and, with
``defaults``, its own values where they differ from the pieces' (each method module names the script they come from).

Sources: zju-vipa/CMI ``datafree_kd.py`` and its ``scripts/`` (CMI, DeepInversion, DAFL, ZSKT, DFQ, DFAD as CMI runs
them), VainF/Data-Free-Adversarial-Distillation (DFAD), Sharpiless/RGAL (RGAL), the activation-regularisation paper
(Qu, Wang, Xiao) for DFAD+AR+VI.  Temperatures are ``temperature`` (and ``*_temperature``) as in the class-incremental
methods; cells made before that name record them as ``T``, ``cr_T``, ``js_T`` (``key_name``).
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.hparams import hp


@dataclass(frozen=True)
class RoundParams:
    """A round of ``synthesize()`` then ``kd_steps`` student steps (CMI ``datafree_kd.py``)."""

    g_steps: int = hp(1, "synthesis steps per round (generator or pixel steps)", "CMI datafree_kd.py --g_steps")
    kd_steps: int = hp(5, "student steps per round (0: the epoch's ep_steps, one round an epoch)",
                       "CMI datafree_kd.py --kd_steps")
    lr_g: float = hp(1e-3, "Adam learning rate of the synthesis", "CMI datafree_kd.py --lr_g 1e-3")
    g_betas: tuple[float, float] = hp([0.5, 0.999], "Adam betas of the synthesis",
                                      "CMI synthesis/*.py betas=(0.5, 0.999)")
    student_batch: int = hp(256, "student batch size", "CMI scripts of the generator methods: --batch_size 256", low=1)


@dataclass(frozen=True)
class LatentParams:
    nz: int = hp(256, "dimension of the generator's input z", "CMI datafree_kd.py --nz", low=1)


@dataclass(frozen=True)
class KDParams:
    temperature: float = hp(1.0, "softmax temperature of the student's KD loss", "CMI datafree_kd.py --T",
                            key_name="T")


@dataclass(frozen=True)
class InversionWeights:
    """Weights of the synthesis terms every inversion method shares (CMI's names)."""

    adv: float = hp(0.0, "weight of the adversarial term (teacher-student disagreement, maximised)",
                    "CMI datafree_kd.py --adv")
    bn: float = hp(0.0, "weight of the BatchNorm-statistics term L_bn", "CMI datafree_kd.py --bn")
    oh: float = hp(0.0, "weight of the one-hot term CE(T(x), targets)", "CMI datafree_kd.py --oh")


@dataclass(frozen=True)
class PoolParams:
    """The synthetic-image pool of pool-based methods (CMI, DeepInversion, RGAL)."""

    pool_bound: int = hp(0, "keep at most this many pool images, the newest (0: every image)",
                         "suite option; official: unbounded")
    pool_rounding: str = hp("floor", "quantisation of pool images to 8 bits",
                            "official save_image_batch: floor", choices=("floor", "round"))


@dataclass(frozen=True)
class GenerativeParams:
    """The generator-based methods' terms and options (CMI ``GenerativeSynthesizer``, DFAD ``DFAD_cifar.py``)."""

    act: float = hp(0.0, "weight of the activation term -mean |f_T| (DAFL)", "CMI datafree_kd.py --act")
    balance: float = hp(0.0, "weight of the information-entropy (class balance) term", "CMI datafree_kd.py --balance")
    criterion: str = hp("kl", "the two players' criterion: KL at the temperature, or L1 between logits (DFAD)",
                        "CMI datafree_kd.py; DFAD: L1", choices=("kl", "l1"))
    generator: str = hp("", "generator architecture (empty: the method's own)", "suite option",
                        choices=("", "cmi", "cmi-large", "dfad"))
    g_student_mode: str = hp("eval", "the student's mode during the generator step", "CMI: eval; DFAD_cifar.py: train",
                             choices=("eval", "train"), key_neutral=True)
    g_schedule: str = hp("constant", "the generator's learning rate: constant, or decayed with the student's",
                         "CMI: constant; DFAD_cifar.py: one MultiStepLR on both", choices=("constant", "student"),
                         key_neutral=True)
    step_order: str = hp("synthesis_first", "a round's order: generator step first, or the student steps first",
                         "CMI datafree_kd.py: synthesis first; DFAD_cifar.py train(): student first",
                         choices=("synthesis_first", "student_first"), key_neutral=True)
