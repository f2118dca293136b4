"""Tiny-ImageNet on generated miniatures of the standard ``tiny-imagenet-200/`` layout: labels and split as the
official PASS loader, one-line errors for a broken layout (and no ``--out`` folder left behind), the decoded-array
cache, and the smoke profile's per-class subset."""
import os
import subprocess

import numpy as np
import pytest
import torch

from benchmark import tinyimagenet
from benchmark.data import fingerprint, load_arrays
from benchmark.errors import BenchError
from benchmark.scenarios import build_scenario, class_order, first_per_class
from conftest import ROOT, make_tinyimagenet_layout, run_main


def test_reads_standard_layout_and_splits_half_in_phase_0(tmp_path):
    make_tinyimagenet_layout(tmp_path)
    sc = build_scenario("tinyimagenet", 10, data_root=str(tmp_path))
    d = sc.data
    assert tuple(d.x_train.shape) == (400, 3, 64, 64) and tuple(d.x_test.shape) == (200, 3, 64, 64)
    assert sc.sizes == [100] + [10] * 10
    # label = position in the PASS order; the pixel value encodes the original class index
    for lbl in (0, 57, 199):
        orig = sc.order[lbl]
        assert abs(int(d.x_test[d.y_test == lbl][0, 0, 10, 10]) - orig) <= 1
    assert sc.spec.augment.crop_padding == 0 and sc.spec.augment.flip  # flip only, as official PASS_tiny.py


def test_numbers_classes_by_sorted_folder_names_as_official_pass(tmp_path):
    """Official PASS (``data_manager_tiny.py``, ``find_classes``): class i is the i-th sorted folder of train/, then
    the seed-1993 permutation; wnids.txt lists them in another order here, as in the real archive."""
    wnids = [f"n{(i * 7919) % 10007:08d}" for i in range(200)]  # not sorted
    assert wnids != sorted(wnids)
    make_tinyimagenet_layout(tmp_path, wnids)
    assert load_arrays("tinyimagenet", tmp_path).classes == sorted(wnids)
    sc = build_scenario("tinyimagenet", 10, data_root=str(tmp_path))
    official = class_order(200, 1993)  # the permutation of the sorted-folder indices
    for lbl in (0, 1, 57, 99, 100, 150, 199):  # phase 0 (labels 0..99) and the later groups
        x = sc.data.x_test[sc.data.y_test == lbl][0, 0, 10, 10]
        assert abs(int(x) - official[lbl]) <= 1


def test_truncated_image_is_one_line_naming_it(tmp_path):
    top = make_tinyimagenet_layout(tmp_path)
    p = top / "train" / "n00000003" / "images" / "n00000003_0.JPEG"
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(BenchError, match="image .*n00000003_0.JPEG cannot be read") as e:
        load_arrays("tinyimagenet", tmp_path)
    assert "\n" not in str(e.value)


def _break_val_annotations(top):
    (top / "val" / "val_annotations.txt").unlink()
    return "val/val_annotations.txt is missing"


def _empty_a_class(top):
    for f in (top / "train" / "n00000005" / "images").iterdir():
        f.unlink()
    return "class n00000005 has no training images"


def _drop_val_of_a_class(top):
    ann = top / "val" / "val_annotations.txt"
    ann.write_text("\n".join(line for line in ann.read_text().splitlines() if "\tn00000007\t" not in line))
    return "class n00000007 has no validation images"


def _drop_wnids(top):
    (top / "wnids.txt").unlink()
    return "wnids.txt is missing"


@pytest.mark.parametrize("breaks", [_break_val_annotations, _empty_a_class, _drop_val_of_a_class, _drop_wnids])
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_broken_layout_is_one_line_exit_2_and_creates_no_out_folder(tmp_path, breaks, dry_run):
    expected = breaks(make_tinyimagenet_layout(tmp_path / "data"))
    out = tmp_path / "out"
    r = run_main("--scenario", "tinyimagenet", "--data-root", str(tmp_path / "data"), "--profile", "smoke",
                 "--methods", "finetune", "--phases", "1", "--out", str(out), "--no-progress",
                 *(["--dry-run"] if dry_run else []))
    assert r.returncode == 2, r.stdout + r.stderr
    assert expected in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "re-extract tiny-imagenet-200" in r.stderr
    assert not out.exists()


def test_decoded_arrays_are_cached_validated_and_rebuilt_when_broken(tmp_path, monkeypatch, capsys):
    top = make_tinyimagenet_layout(tmp_path)
    first = load_arrays("tinyimagenet", tmp_path)
    entries = list((tmp_path / tinyimagenet.CACHE_FOLDER).iterdir())
    assert len(entries) == 1 and (entries[0] / "meta.json").is_file()
    assert first.sha256 == fingerprint(first.x_train, first.y_train, first.x_test, first.y_test)

    decoded = []
    real_decode = tinyimagenet.decode
    monkeypatch.setattr(tinyimagenet, "decode", lambda layout: decoded.append(1) or real_decode(layout))
    second = load_arrays("tinyimagenet", tmp_path)  # from the cache: no JPEG decoded
    assert not decoded and second.sha256 == first.sha256 and torch.equal(second.x_train, first.x_train)

    # a truncated entry is noticed (its sha256 no longer matches meta.json) and decoded again, never used
    x = entries[0] / "x_train.npy"
    arr = np.load(x)
    arr[0, 0, 0, 0] ^= 0xFF
    np.save(x, arr)
    third = load_arrays("tinyimagenet", tmp_path)
    assert decoded == [1] and third.sha256 == first.sha256
    assert "does not match its record; decoding the JPEGs again" in capsys.readouterr().err
    x.write_bytes(x.read_bytes()[:1000])
    assert load_arrays("tinyimagenet", tmp_path).sha256 == first.sha256 and decoded == [1, 1]

    # a changed layout (one more training image) gets a new entry; the old one is removed
    (top / "train" / "n00000000" / "images" / "extra.JPEG").write_bytes(
        (top / "train" / "n00000000" / "images" / "n00000000_0.JPEG").read_bytes())
    fourth = load_arrays("tinyimagenet", tmp_path)
    assert len(fourth.x_train) == len(first.x_train) + 1 and decoded == [1, 1, 1]
    after = list((tmp_path / tinyimagenet.CACHE_FOLDER).iterdir())
    assert len(after) == 1 and after[0].name != entries[0].name


def test_an_unwritable_data_root_decodes_every_time_with_a_note(tmp_path, monkeypatch, capsys):
    make_tinyimagenet_layout(tmp_path)
    (tmp_path / tinyimagenet.CACHE_FOLDER).write_text("a file where the cache folder would go")
    d = load_arrays("tinyimagenet", tmp_path)
    assert len(d.x_train) == 400
    assert "cannot cache the decoded Tiny-ImageNet" in capsys.readouterr().err


def test_first_per_class_keeps_the_first_images_of_each_class_in_stored_order():
    y = torch.tensor([2, 0, 0, 1, 2, 2, 0, 1])
    assert first_per_class(y, 2).tolist() == [0, 1, 2, 3, 4, 7]
    assert first_per_class(y, 1).tolist() == [0, 1, 3]
    assert first_per_class(y, 9).tolist() == list(range(8))


def test_smoke_trains_on_a_per_class_subset_recorded_in_the_cell_and_its_report(tmp_path):
    """smoke keeps 5 training / 2 test images per class of a large scenario (here 6 / 3 of each class); the cell
    records the subset (so its key differs from a cell on every image), the result and report say so, and
    ``--per-class all`` keeps every image with the key it had before subsets existed (no ``subset`` entry)."""
    from benchmark.runner import make_cells

    make_tinyimagenet_layout(tmp_path / "data", train_per_class=6, val_per_class=3)
    kw = dict(scenarios=["tinyimagenet"], phases=[1], methods=["finetune"], seeds=[0], profile="smoke",
              data_root=str(tmp_path / "data"))
    (cut,) = make_cells(**kw)
    (full,) = make_cells(**kw, per_class="all")
    assert cut.config["subset"] == [5, 2] and "subset" not in full.config and cut.key != full.key
    sc = build_scenario("tinyimagenet", 1, data_root=str(tmp_path / "data"), per_class=(5, 2))
    assert np.bincount(sc.data.y_train.numpy()).tolist() == [5] * 200
    assert np.bincount(sc.data.y_test.numpy()).tolist() == [2] * 200

    out = tmp_path / "out"
    r = run_main("--scenario", "tinyimagenet", "--data-root", str(tmp_path / "data"), "--profile", "smoke",
                 "--methods", "finetune", "--phases", "0", "--base-classes", "4", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    note = "tinyimagenet trimmed to the first 5 training images of each class (of 6) and the first 2 test images"
    assert note in (out / "report" / "tables.md").read_text()
    assert run_main("--per-class", "20/0").returncode == 2


@pytest.mark.skipif(not (ROOT / ".git").is_dir(), reason="needs a git checkout")
def test_recording_provenance_never_writes_into_the_repository():
    """``git status`` refreshes ``.git/index`` when a tracked file's stat data changed; the suite's provenance
    probe must not (``git --no-optional-locks``)."""
    from benchmark.provenance import versions

    index, tracked = ROOT / ".git" / "index", ROOT / "benchmark" / "errors.py"
    before = index.stat().st_mtime_ns
    os.utime(tracked)  # new mtime, same content: a plain `git status` would rewrite the index
    assert versions()["git_commit"]
    assert index.stat().st_mtime_ns == before
    subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True)  # tidy up for the next run
