"""RGAL's prototype optimisation composed with a plain Avalanche ``Naive`` strategy (no PASS): a prototype bank,
prototype loss and prototype update as plugins, plus the RGAL plugin, on two real phases of cifar100-mini."""
import torch
from avalanche.training import Naive

from benchmark.methods import MethodContext, make_suite_plugin, placeholder_optimizer, quiet_evaluator
from benchmark.models import build_model
from benchmark.profiles import PROFILES
from benchmark.scenarios import build_scenario
from strategies.pass_plugins import OldModelHolder, PrototypeAugmentationPlugin, PrototypeUpdatePlugin
from strategies.prototypes import PrototypeBank
from strategies.rgal.prototype_optimization import PrototypeOptimizationPlugin


def test_rgal_prototype_plugin_works_in_a_naive_strategy():
    torch.manual_seed(0)
    sc = build_scenario("cifar100-mini", 1)
    recipe = PROFILES.get("smoke").base
    net = build_model("resnet20", sc.n_used_classes, 3, sc.spec.mean, sc.spec.std)
    ctx = MethodContext(net, sc, lambda k: recipe, {}, torch.device("cpu"))
    bank, old = PrototypeBank(), OldModelHolder()
    proto = PrototypeAugmentationPlugin(bank, net.head, weight=1.0, temperature=1.0, n_samples=16, label_scale=1,
                                        generator=torch.Generator().manual_seed(0))
    update = PrototypeUpdatePlugin(bank, old, net, 32, sc.spec.augment, lambda: 1, "cpu")
    rgal = PrototypeOptimizationPlugin(bank, old, net.head, label_scale=1, steps=3)
    suite = make_suite_plugin(ctx)
    strategy = Naive(model=net, optimizer=placeholder_optimizer(net), criterion=torch.nn.CrossEntropyLoss(),
                     train_mb_size=32, device="cpu", plugins=[proto, update, rgal, suite], evaluator=quiet_evaluator())
    for k, exp in enumerate(sc.benchmark.train_stream):
        suite.phase = k
        strategy.train(exp, eval_streams=[])
        if k == 0:
            stored = {c: m.clone() for c, m in bank.means.items()}
            assert proto.last_samples is None and rgal.movement == []  # no old classes in phase 0
    assert len(rgal.movement) == 1 and rgal.movement[0] > 0
    p, c = proto.last_samples
    assert p.shape == (16, net.embed_dim) and int(c.max()) < 50  # samples of phase-0 classes only
    for cls, m in stored.items():  # the stored class means are never modified by the optimisation
        assert torch.equal(bank.means[cls], m)
    assert len(bank) == sc.n_used_classes


def test_both_rgal_plugins_in_a_plain_avalanche_strategy_with_its_own_loader():
    """No suite plugin: Avalanche's own train loader, replaced by the paired-sampling plugin."""
    from avalanche.core import SupervisedPlugin

    from strategies.pass_plugins import FeatureCapturePlugin
    from strategies.rgal.paired_sampling import PairedSamplingPlugin
    from strategies.rgal.triplet_plugin import TripletLossPlugin

    class Record(SupervisedPlugin):
        def __init__(self):
            super().__init__()
            self.pairs_ok, self.losses = [], []

        def before_backward(self, strategy, **kw):
            y = strategy.mb_y
            h = len(y) // 2
            self.pairs_ok.append((strategy.experience.current_experience, bool(torch.equal(y[:h], y[h:]))))

        def after_backward(self, strategy, **kw):
            self.losses.append(float(strategy.loss.detach()))

    torch.manual_seed(0)
    sc = build_scenario("cifar100-mini", 1)
    net = build_model("resnet20", sc.n_used_classes, 3, sc.spec.mean, sc.spec.std)
    bank, old = PrototypeBank(), OldModelHolder()
    proto = PrototypeAugmentationPlugin(bank, net.head, weight=1.0, temperature=1.0, n_samples=16, label_scale=1,
                                        generator=torch.Generator().manual_seed(0))
    update = PrototypeUpdatePlugin(bank, old, net, 32, sc.spec.augment, lambda: 1, "cpu")
    capture = FeatureCapturePlugin(net.backbone)
    triplet = TripletLossPlugin(capture, weight=0.1, generator=torch.Generator().manual_seed(0))
    rgal_g = PrototypeOptimizationPlugin(bank, old, net.head, steps=2)
    rec = Record()
    strategy = Naive(model=net, optimizer=torch.optim.Adam(net.parameters(), 1e-3),
                     criterion=torch.nn.CrossEntropyLoss(), train_mb_size=32, train_epochs=1, device="cpu",
                     plugins=[capture, proto, rgal_g, triplet, PairedSamplingPlugin(), update, rec],
                     evaluator=quiet_evaluator())
    for exp in sc.benchmark.train_stream:
        strategy.train(exp, eval_streams=[])
        if exp.current_experience == 0:  # L'_s acts in incremental training only: phase 0 is the plain strategy's
            assert triplet.last_loss is None
    # 50 + 50 classes x 20 images: phase 0 in Avalanche's own shuffled batches of 32 (ceil(1000 / 32), same-label
    # halves only by chance), phase 1 paired, 16 anchors a batch, every sample once as an anchor (ceil(1000 / 16))
    phase0 = [ok for k, ok in rec.pairs_ok if k == 0]
    phase1 = [ok for k, ok in rec.pairs_ok if k == 1]
    assert len(phase0) == 32 and not any(phase0)
    assert len(phase1) == 63 and all(phase1)
    assert triplet.last_loss is not None and float(triplet.last_loss) >= 0.0
    assert all(torch.isfinite(torch.tensor(rec.losses)))
    assert len(rgal_g.movement) == 1 and rgal_g.movement[0] > 0
