"""Prototype bank: class means and radius against numpy's definitions, sampling distribution, state round trip."""
import numpy as np
import pytest
import torch

from strategies.prototypes import PrototypeBank


def test_means_and_radius_match_official_numpy_computation():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(60, 5, generator=g)
    y = torch.tensor([0] * 20 + [1] * 25 + [2] * 15)
    bank = PrototypeBank()
    bank.update(f, y)
    radius = []
    for c in range(3):
        fc = f[y == c].numpy().astype(np.float64)
        assert np.allclose(bank.means[c].numpy(), fc.mean(0), atol=1e-6)
        radius.append(np.trace(np.cov(fc.T)) / 5)
    assert bank.radius == pytest.approx(np.sqrt(np.mean(radius)))


def test_radius_is_kept_from_phase_0_unless_recomputed():
    g = torch.Generator().manual_seed(1)
    bank, again = PrototypeBank(), PrototypeBank(recompute_radius=True)
    for b in (bank, again):
        b.update(torch.randn(40, 4, generator=g), torch.tensor([0] * 20 + [1] * 20))
    r0 = bank.radius
    for b in (bank, again):
        b.update(10 * torch.randn(40, 4, generator=g), torch.tensor([2] * 20 + [3] * 20))
    assert bank.radius == r0 and again.radius > 3 * r0 and bank.classes == [0, 1, 2, 3]


def test_recomputed_radius_weighs_every_class_once_not_every_phase():
    # phase 0: 3 classes of spread 1 per dimension; phase 1: 1 class of spread 9.  Mean over classes:
    # (1 + 1 + 1 + 9) / 4 = 3 (a mean of the two phases' means would give 5)
    n = 4
    unit = torch.tensor([[1.0, 1, 1], [-1, -1, -1]] * (n // 2))  # per-dimension unbiased variance 4/3
    scale = (3 / 4) ** 0.5  # -> variance 1 per dimension, trace / d = 1
    f0 = torch.cat([scale * unit + c for c in range(3)])
    y0 = torch.arange(3).repeat_interleave(n)
    bank = PrototypeBank(recompute_radius=True)
    bank.update(f0, y0)
    assert bank.radius == pytest.approx(1.0)
    bank.update(3 * scale * unit + 10, torch.full((n,), 3))
    assert bank.radius == pytest.approx(3 ** 0.5)
    again = PrototypeBank()
    again.load_state_dict(bank.state_dict())
    again.update(3 * scale * unit - 10, torch.full((n,), 4))  # (1 + 1 + 1 + 9 + 9) / 5
    assert again.radius == pytest.approx((21 / 5) ** 0.5)


def test_sampling_draws_classes_uniformly_with_gaussian_noise_of_radius_r():
    bank = PrototypeBank()
    bank.means = {0: torch.zeros(64), 1: torch.full((64,), 10.0), 2: torch.full((64,), -10.0)}
    bank.radius = 0.5
    p, y = bank.sample(30000, torch.Generator().manual_seed(2))
    freq = torch.bincount(y, minlength=3).float() / len(y)
    assert torch.allclose(freq, torch.full((3,), 1 / 3), atol=0.01)
    noise = p - torch.stack([bank.means[int(c)] for c in y])
    assert noise.mean().abs() < 0.01 and noise.std().item() == pytest.approx(0.5, rel=0.01)
    st = bank.state_dict()
    other = PrototypeBank()
    other.load_state_dict(st)
    assert other.radius == 0.5 and torch.equal(other.means[1], bank.means[1])


def test_one_sample_hook_per_bank_and_pools_are_raw_augmented_samples_class_by_class():
    from benchmark.errors import BenchError

    bank = PrototypeBank()
    labels = torch.tensor([3, 3, 7, 7])
    bank.update(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 6.0]]), labels)  # means (1, 0), (0, 5)
    hook = lambda p, c, ctx: p + 100  # noqa: E731
    bank.install_sample_hook(hook)
    bank.install_sample_hook(hook)  # the same hook again is harmless
    with pytest.raises(BenchError, match="already has a sample_hook"):
        bank.install_sample_hook(lambda p, c, ctx: p)  # a second one would silently replace the first
    assert (bank.sample(4)[0] > 50).all()
    p, c = bank.augmented(3, torch.Generator().manual_seed(0))  # not hooked; rows 0-2 class 3, rows 3-5 class 7
    assert c.tolist() == [3, 3, 3, 7, 7, 7]
    noise = torch.randn(6, 2, generator=torch.Generator().manual_seed(0)) * bank.radius
    assert torch.allclose(p, torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 5.0]] * 3) + noise)
    bank.noise = False
    assert torch.equal(bank.augmented(2)[0], torch.tensor([[1.0, 0.0]] * 2 + [[0.0, 5.0]] * 2))
