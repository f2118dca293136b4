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
    rgal = PrototypeOptimizationPlugin(proto, old, net.head, lambda: bank.radius, label_scale=1, steps=3)
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
