"""The data-free quantization task's ImageNet scenario (RGAL Table 13) on a generated miniature of the standard
validation layout (``imagenet/val/<wnid>/*.JPEG``, 1,000 synset folders, 6 images): the layout's checks, the
streamed evaluation against torchvision's own pipeline with a torchvision checkpoint, GDFQ's ImageNet generator,
and a smoke run from the command line to the Table 13 report."""
import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from benchmark.errors import BenchError
from benchmark.imagenet import read_imagenet_val
from benchmark.models import build_model
from benchmark.models.generators import GENERATORS
from benchmark.models.resnet_imagenet import IMAGENET_MEAN, IMAGENET_STD
from benchmark.teachers import _load_user_checkpoint
from benchmark.teachers import test_accuracy as top1_of
from conftest import run_main as in_process
from test_cli import _one_line_error

FAVOURED = 1  # the checkpoint's classifier bias makes every image class 1


def _layout(root, folders=1000, images=((0, 2), (1, 2), (2, 2))):
    val = root / "imagenet" / "val"
    rng = np.random.default_rng(0)
    for i in range(folders):
        (val / f"n{i:08d}").mkdir(parents=True, exist_ok=True)
    for cls, n in images:
        for j in range(n):
            Image.fromarray(rng.integers(0, 256, (40 + 8 * j, 48, 3), dtype=np.uint8)).save(
                val / f"n{cls:08d}" / f"ILSVRC2012_val_{cls}{j}.JPEG")
    return root


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    root = _layout(tmp_path_factory.mktemp("imagenet-mini"))
    torch.manual_seed(0)
    tv = torchvision.models.resnet18()
    with torch.no_grad():
        tv.fc.bias[FAVOURED] = 30.0
    torch.save(tv.state_dict(), root / "resnet18-tv.pth")
    return root


def test_the_layout_is_checked_with_one_line_errors(tmp_path):
    with pytest.raises(BenchError, match="imagenet/val/<wnid>"):
        read_imagenet_val(str(tmp_path / "none"))
    with pytest.raises(BenchError, match="999 class folders, ImageNet has 1000"):
        read_imagenet_val(str(_layout(tmp_path / "short", folders=999)))
    with pytest.raises(BenchError, match="has no images"):
        read_imagenet_val(str(_layout(tmp_path / "empty", images=())))


def test_streamed_evaluation_matches_torchvision_with_a_torchvision_checkpoint(imagenet):
    data = read_imagenet_val(str(imagenet))
    assert (data.n_classes, data.n_test, data.image_shape) == (1000, 6, (3, 224, 224))
    assert [y for _, y in data.samples] == [0, 0, 1, 1, 2, 2]  # sorted synset folders
    net = build_model("resnet18_imagenet", 1000, 3, IMAGENET_MEAN, IMAGENET_STD)
    _load_user_checkpoint(net, imagenet / "resnet18-tv.pth")  # torchvision's key names
    net.eval()
    tv = torchvision.models.resnet18()
    tv.load_state_dict(torch.load(imagenet / "resnet18-tv.pth"))
    tv.eval()
    ref = torchvision.datasets.ImageFolder(str(imagenet / "imagenet" / "val"), allow_empty=True,
                                           transform=torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms())
    x_ref = torch.stack([ref[i][0] for i in range(len(ref))])
    (x, y), = list(data.test_batches(100))
    assert x.dtype == torch.uint8 and x.shape == (6, 3, 224, 224)
    with torch.no_grad():
        # the suite's uint8 pipeline against torchvision's float one: the same images up to uint8 rounding
        assert (net(x) - tv(x_ref)).abs().max() < 0.05 * tv(x_ref).abs().max()
    assert top1_of(net, data, "cpu") == pytest.approx(2 / 6)  # class 1's two images


def test_a_damaged_image_is_a_one_line_error_at_evaluation(tmp_path):
    root = _layout(tmp_path, images=((0, 1),))
    (root / "imagenet" / "val" / "n00000001" / "ILSVRC2012_val_bad.JPEG").write_bytes(b"not a jpeg")
    data = read_imagenet_val(str(root))
    net = build_model("resnet18_imagenet", 1000, 3, IMAGENET_MEAN, IMAGENET_STD)
    with pytest.raises(BenchError, match="reading .*imagenet/val failed"):
        top1_of(net, data, "cpu")


def test_imagenet_generator_conditions_through_its_batchnorms():
    torch.manual_seed(0)
    g = GENERATORS["gdfq-imagenet"](nz=16, ngf=4, img_size=32, nc=3, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                     n_classes=10)
    assert not any("label" in n for n, _ in g.named_parameters())  # no label embedding of z
    z = torch.randn(4, 16)
    with torch.no_grad():
        g.cbn1.weight.weight[3].mul_(3.0)  # class 3's scale
        x_a, x_b = g(z, torch.tensor([0, 0, 0, 0])), g(z, torch.tensor([0, 0, 0, 3]))
    assert x_a.shape == (4, 3, 32, 32)
    assert not torch.allclose(x_a[3], x_b[3])  # the label changes the image of the same z


def test_smoke_run_from_the_command_line_to_table13(imagenet, tmp_path):
    out = tmp_path / "out"
    p = in_process("--task", "dfq", "--scenario", "imagenet", "--profile", "smoke", "--teacher-checkpoint",
                   str(imagenet / "resnet18-tv.pth"), "--data-root", str(imagenet), "--methods", "teacher",
                   "intraq+rgal-g", "--bits", "4", "--seeds", "0", "--out", str(out), "--no-progress")
    assert p.returncode == 0, p.stderr
    results = {p.parent.name.split("-s0")[0]: json.loads(p.read_text()) for p in out.glob("*/result.json")}
    assert set(results) == {"imagenet-teacher", "imagenet-intraq+rgal-g-w4a4"}
    assert results["imagenet-teacher"]["teacher"]["test_accuracy"] == pytest.approx(2 / 6)
    cell = results["imagenet-intraq+rgal-g-w4a4"]["cell"]
    assert cell["image_size"] == 32 and cell["teacher_recipe"] is None and cell["teacher_key"] is None
    params = results["imagenet-intraq+rgal-g-w4a4"]["cell"]["method_params"]
    assert params["generator"] == "gdfq-imagenet" and params["target_low"] == 1.0 and params["rgal_synthesis"]
    assert not {"rgal_student", "tri_s", "s_sampler", "s_labels"} & set(params)  # L'_g only: no student-side key
    table = (out / "report" / "dfq_tables.md").read_text()
    row = next(line for line in table.splitlines() if "'W4A4', 'intraq+rgal-g'" in line)
    assert "66.84" in row  # Table 13: IntraQ + L'_g, W4A4


def test_imagenet_without_a_teacher_checkpoint_is_a_one_line_error(imagenet):
    _one_line_error(in_process("--task", "dfq", "--scenario", "imagenet", "--profile", "smoke", "--data-root",
                               str(imagenet), "--dry-run"), "--teacher-checkpoint", "does not train")
