"""Batched augmentation against its per-image definition, and the model interface."""
import pytest
import torch

from benchmark.augment import CIFAR_PASS, augment_batch, random_brightness, random_crop, random_flip
from benchmark.models import MODELS, build_model


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6) + 1
    out = random_crop(x, 2, g)
    g2 = torch.Generator().manual_seed(0)
    oy = torch.randint(0, 5, (2,), generator=g2)
    ox = torch.randint(0, 5, (2,), generator=g2)
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        assert torch.equal(out[i], xp[i, :, oy[i]:oy[i] + 6, ox[i]:ox[i] + 6])


def test_flip_probability_and_brightness_range():
    g = torch.Generator().manual_seed(1)
    x = torch.arange(8, dtype=torch.float32).view(1, 1, 1, 8).repeat(4000, 1, 1, 1)
    flipped = (random_flip(x, g)[:, 0, 0, 0] == 7).float().mean().item()
    assert 0.46 < flipped < 0.54
    b = 63 / 255
    f = random_brightness(torch.full((4000, 1, 1, 1), 0.5), b, g).flatten() / 0.5
    assert f.min() >= 1 - b - 1e-6 and f.max() <= 1 + b + 1e-6
    assert abs(f.mean().item() - 1.0) < 0.01


def test_augment_batch_is_reproducible_and_in_unit_range():
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    a = augment_batch(x, CIFAR_PASS, torch.Generator().manual_seed(3))
    b = augment_batch(x, CIFAR_PASS, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == torch.float32 and 0 <= a.min() and a.max() <= 1


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_returns_logits_embedding_and_blocks(name):
    grey = name.startswith("lenet")
    c = 1 if grey else 3
    m = build_model(name, 10, c, (0.5,) * c, (0.25,) * c).eval()
    x = torch.randint(0, 256, (2, c, 32, 32), dtype=torch.uint8)
    logits, emb = m.forward_features(x)
    assert logits.shape == (2, 10) and emb.shape == (2, m.embed_dim)
    emb2, blocks = m.backbone(x, return_blocks=True)
    assert torch.allclose(emb, emb2) and len(blocks) >= 3
    # uint8 and [0, 1] float inputs are the same images
    assert torch.allclose(m(x), m(x.float() / 255), atol=1e-5)


def test_embedding_sizes_of_the_paper_backbones():
    dims = {"resnet18": 512, "reduced_resnet18": 160, "resnet20": 64, "wrn40_2": 128, "lenet5": 84, "lenet5_half": 42}
    for name, d in dims.items():
        c = 1 if name.startswith("lenet") else 3
        assert build_model(name, 10, c, (0.5,) * c, (0.25,) * c).embed_dim == d


def test_sliced_head_limits_logits_to_seen_classes():
    m = build_model("resnet20", 10, 3, (0.5,) * 3, (0.25,) * 3).eval()
    x = torch.rand(2, 3, 32, 32)
    full = m(x)
    m.set_active_classes(4)
    assert torch.allclose(m(x), full[:, :4])


def _crop_boxes(**kw):
    """(width, height) fractions of the boxes ``random_resized_crop`` samples for 2,000 images."""
    from unittest import mock

    from benchmark.augment import random_resized_crop

    seen = []
    real = torch.nn.functional.affine_grid
    with mock.patch("torch.nn.functional.affine_grid",
                    lambda th, *a, **k: seen.append(th.clone()) or real(th, *a, **k)):
        random_resized_crop(torch.rand(2000, 3, 8, 8), torch.Generator().manual_seed(0), **kw)
    return seen[0][:, 0, 0], seen[0][:, 1, 1]


def test_resized_crop_redraws_boxes_that_do_not_fit_as_torchvision_and_kornia():
    """CMI's local view (kornia ``RandomResizedCrop``): up to 10 candidates, the first that fits is kept; never a box
    clamped to the image side (the earlier clamping made 17 % of them full-width or full-height)."""
    w, h = _crop_boxes()
    area, ratio = w * h, w / h
    assert bool(((w < 1) & (h < 1)).all())
    assert float(area.min()) >= 0.25 - 1e-6 and float(ratio.min()) >= 0.75 - 1e-5 and float(ratio.max()) <= 4 / 3 + 1e-5
    assert 0.55 < float(area.mean()) < 0.59  # E[area | fits] below the unconditional 0.625: large boxes fail more
    # no candidate can fit (every box wider than the image): the whole image, as torchvision's fallback
    w, h = _crop_boxes(scale=(0.9, 1.0), ratio=(1.5, 2.0))
    assert bool((w == 1).all() and (h == 1).all())
