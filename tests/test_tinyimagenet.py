"""Tiny-ImageNet: a generated miniature copy of the standard layout is read and split as the real one."""
import numpy as np
from PIL import Image

from benchmark.scenarios import build_scenario


def _make_layout(root, n_classes=200):
    top = root / "tiny-imagenet-200"
    wnids = [f"n{i:08d}" for i in range(n_classes)]
    (top / "val" / "images").mkdir(parents=True)
    (top / "wnids.txt").write_text("\n".join(wnids) + "\n")
    ann = []
    for i, w in enumerate(wnids):
        d = top / "train" / w / "images"
        d.mkdir(parents=True)
        for k in range(2):
            Image.fromarray(np.full((64, 64, 3), i, dtype=np.uint8)).save(d / f"{w}_{k}.JPEG", quality=100)
        Image.fromarray(np.full((64, 64, 3), i, dtype=np.uint8)).save(top / "val" / "images" / f"val_{i}.JPEG",
                                                                      quality=100)
        ann.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63")
    (top / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")


def test_reads_standard_layout_and_splits_half_in_phase_0(tmp_path):
    _make_layout(tmp_path)
    sc = build_scenario("tinyimagenet", 10, data_root=str(tmp_path))
    d = sc.data
    assert tuple(d.x_train.shape) == (400, 3, 64, 64) and tuple(d.x_test.shape) == (200, 3, 64, 64)
    assert sc.sizes == [100] + [10] * 10
    # label = position in the PASS order; the pixel value encodes the original class index
    for lbl in (0, 57, 199):
        orig = sc.order[lbl]
        assert abs(int(d.x_test[d.y_test == lbl][0, 0, 10, 10]) - orig) <= 1
    assert sc.spec.augment.crop_padding == 0 and sc.spec.augment.flip  # flip only, as official PASS_tiny.py
