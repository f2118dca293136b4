"""Fake quantization (``benchmark.quantization``) against hand-computed values: the quantizer's levels and range,
rounding half to even, per-channel weight ranges, the straight-through gradient, the released activation-range
update, which layers a quantized ResNet-20 quantizes (21 convolutions, the classifier, 19 activations as GDFQ's
pytorchcv ResNet-20), a model that reuses a ReLU refused, ``--bits`` parsing, and an 8-bit LeNet-5 on the real MNIST
test images within a point of its float accuracy."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from benchmark.errors import BenchError
from benchmark.models import build_model
from benchmark.quantization import (QuantAct, fake_quantize, parse_bits, quant_params, quantize_model,
                                    set_range_tracking, weight_bits)
from conftest import SHARED_DATA


def test_four_bit_grid_of_an_activation_range_by_hand():
    # [0, 6] at 4 bits: s = 15 / 6 = 2.5, z = round(0) + 8 = 8; levels 0, 0.4, ..., 6
    s, z = quant_params(4, torch.tensor(0.0), torch.tensor(6.0))
    assert float(s) == 2.5 and float(z) == 8
    x = torch.tensor([-1.0, 0.0, 0.1, 0.2, 1.1, 5.9, 6.0, 7.0])
    # 0.2 -> round(0.5 - 8) = round(-7.5) = -8 (half to even) -> 0; 1.1 -> round(-5.25) = -5 -> 1.2; out of range clamps
    expected = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.2, 6.0, 6.0, 6.0])
    assert torch.allclose(fake_quantize(x, 4, 0.0, 6.0), expected, atol=1e-6)
    assert len(set(fake_quantize(torch.linspace(-1, 7, 1001), 4, 0.0, 6.0).tolist())) == 16  # 2^4 levels


def test_asymmetric_weight_range_keeps_zero_exact():
    # [-0.3, 0.2] at 4 bits: s = 15 / 0.5 = 30, z = round(-9) + 8 = -1
    s, z = quant_params(4, torch.tensor(-0.3), torch.tensor(0.2))
    assert float(s) == pytest.approx(30.0) and float(z) == -1
    x = torch.tensor([-0.3, 0.0, 0.05, 0.2])
    # 0.05 -> round(1.5 + 1) = round(2.5) = 2 (half to even) -> (2 - 1) / 30
    assert torch.allclose(fake_quantize(x, 4, -0.3, 0.2), torch.tensor([-0.3, 0.0, 1 / 30, 0.2]), atol=1e-6)


def test_straight_through_gradient_is_the_identity_even_outside_the_range():
    x = torch.tensor([-5.0, 0.3, 2.0, 9.0], requires_grad=True)
    (fake_quantize(x, 3, 0.0, 4.0) * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert x.grad.tolist() == [1.0, 2.0, 3.0, 4.0]


def _quantized(layer: nn.Module, bits: int) -> nn.Module:
    from torch.nn.utils import parametrize

    from benchmark.quantization import WeightQuantizer

    parametrize.register_parametrization(layer, "weight", WeightQuantizer(bits))
    return layer


def test_weights_are_quantized_per_output_channel_from_their_own_min_and_max():
    conv = nn.Conv2d(2, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[0.0, 1.0], [-2.0, 2.0], [0.5, 0.75]]).view(3, 2, 1, 1))
    conv = _quantized(conv, 2)  # 4 levels per channel
    eye = torch.eye(2).view(2, 2, 1, 1)  # two inputs reading out the two weights of every channel
    out = conv(eye).view(2, 3).T  # out[c] = the quantized weights of channel c
    # [0, 1]: s = 3, z = 2, ends exact; [0.5, 0.75]: s = 12, s * min = 6 integral, ends exact; [-2, 2]: s = 0.75,
    # s * min = -1.5 rounds (half to even) to -2, so z = 0 and the grid is -2.667, -1.333, 0, 1.333 (the official
    # integral zero point keeps 0 exact and shifts the range by up to half a step): 2 clamps to 1.333
    assert torch.allclose(out, torch.tensor([[0.0, 1.0], [-8 / 3, 4 / 3], [0.5, 0.75]]), atol=1e-6)
    lin = nn.Linear(3, 1, bias=False)
    with torch.no_grad():  # [0.25, 1]: s = 4, z = 3, levels 0.25, 0.5, 0.75, 1; 0.6 -> round(-0.6) = -1 -> 0.5
        lin.weight.copy_(torch.tensor([[0.25, 0.6, 1.0]]))
    lin = _quantized(lin, 2)
    assert torch.allclose(lin(torch.eye(3)).flatten(), torch.tensor([0.25, 0.5, 1.0]), atol=1e-6)
    lin(torch.ones(1, 3)).sum().backward()  # the float weight is what trains: straight-through gradient reaches it
    assert torch.equal(lin.parametrizations.weight.original.grad, torch.ones(1, 3))


def test_activation_range_follows_the_released_update_then_stays_fixed():
    act = QuantAct(4)
    act.tracking = True
    x = torch.full((2, 3), 2.0)
    x[0, 0] = -1.0
    act(x)  # t = 1: (0 * 0.9 + m * 0.1) / (1 - 0.9) = m
    assert float(act.x_max) == pytest.approx(2.0) and float(act.x_min) == pytest.approx(-1.0)
    act(x)  # t = 2: (m * 0.9 + m * 0.1) / (1 - 0.81) = m / 0.19 (the released correction of a corrected value)
    assert float(act.x_max) == pytest.approx(2.0 / 0.19, rel=1e-5)
    for _ in range(300):  # it settles back to the batch max after ~200 updates
        act(x)
    assert float(act.x_max) == pytest.approx(2.0, rel=1e-3)
    act.tracking = False
    act(x * 10)
    assert float(act.x_max) == pytest.approx(2.0, rel=1e-3)  # fixed: a larger batch no longer moves it


def test_quantized_resnet20_quantizes_every_conv_and_the_classifier_and_every_activation():
    torch.manual_seed(0)
    net = build_model("resnet20", 100, 3, (0.5,) * 3, (0.25,) * 3)
    probe = torch.rand(4, 3, 32, 32)
    q = quantize_model(net, 4, 4, probe)
    layers = [m for m in q.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [weight_bits(m) for m in layers] == [4] * 22  # 21 convolutions (stem, 18 in blocks, 2 shortcuts), head
    assert sum(isinstance(m, QuantAct) for m in q.modules()) == 19  # after the stem's ReLU and both of each block's
    assert sum(p.numel() for p in q.parameters()) == sum(p.numel() for p in net.parameters())  # nothing added
    assert sum(type(m) is nn.BatchNorm2d for m in q.modules()) == 21  # BatchNorm stays float
    ends = quantize_model(net, 4, 4, probe, first_last_bits=8)
    bits = [weight_bits(m) for m in ends.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert bits[0] == 8 and bits[-1] == 8 and set(bits[1:-1]) == {4}
    # the copy is fake-quantized: its logits differ from the float model's, the float model is untouched
    set_range_tracking(q, True)
    q.eval()
    with torch.no_grad():
        q(probe)
        assert not torch.allclose(q(probe), net.eval()(probe))
    assert not any(isinstance(m, QuantAct) for m in net.modules())


def test_a_model_that_reuses_a_relu_module_is_refused():
    class Reuse(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.relu = nn.Linear(4, 4), nn.Linear(4, 2), nn.ReLU()

        def forward(self, x):
            return self.b(self.relu(self.a(self.relu(x))))

    with pytest.raises(BenchError, match="ReLU module.* relu run more than once"):
        quantize_model(Reuse(), 4, 4, torch.rand(2, 4))


def test_bits_flag_parses_w_and_wxa():
    assert parse_bits("4") == (4, 4) and parse_bits("4x8") == (4, 8) and parse_bits("3X3") == (3, 3)
    for bad in ("1", "4x", "x4", "four", "4x8x2", "32", "9", "4x9"):
        with pytest.raises(BenchError, match="--bits"):
            parse_bits(bad)


@pytest.mark.skipif(not (SHARED_DATA / "mnist.npz").is_file(), reason="needs the team's MNIST")
def test_eight_bit_lenet_is_within_a_point_of_float_on_real_mnist():
    import numpy as np

    d = np.load(SHARED_DATA / "mnist.npz")
    torch.manual_seed(0)

    def images(x):
        return F.pad(torch.from_numpy(x).float().div(255).unsqueeze(1), (2, 2, 2, 2))

    x, y = images(d["x_train"][:12000]), torch.from_numpy(d["y_train"][:12000]).long()
    xt, yt = images(d["x_test"][:3000]), torch.from_numpy(d["y_test"][:3000]).long()
    net = build_model("lenet5", 10, 1, (0.1307,), (0.3081,))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for i in range(0, len(x), 128):  # one epoch of 12,000 images
        opt.zero_grad()
        F.cross_entropy(net(x[i:i + 128]), y[i:i + 128]).backward()
        opt.step()
    net.eval()

    def accuracy(model):
        with torch.no_grad():
            return (model.eval()(xt).argmax(1) == yt).float().mean().item()

    def calibrated(w_bits, a_bits):
        q = quantize_model(net, w_bits, a_bits, x[:8])
        set_range_tracking(q, True)  # the official warm-up: ranges tracked on training batches, then fixed (300
        with torch.no_grad():  # updates: the released update settles after ~200, the recipes make 800)
            for i in range(0, 32 * 300, 32):
                q(x[i:i + 32])
        set_range_tracking(q, False)
        return q

    fp, w8, w2 = accuracy(net), accuracy(calibrated(8, 8)), accuracy(calibrated(2, 2))
    print(f"float {fp:.4f}, W8A8 {w8:.4f}, W2A2 {w2:.4f}")
    assert fp > 0.9
    assert abs(fp - w8) <= 0.01, (fp, w8)
    assert w2 < fp - 0.02  # and the quantizer does act: 2 bits cost accuracy
