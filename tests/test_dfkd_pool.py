"""The synthetic pool: bounded views, and reload/truncation to the size a checkpoint recorded (what makes a resumed
pool-based method see the pool the uninterrupted run had).  Its uint8 quantisation: tests/test_fidelity.py."""
import torch

from strategies.dfkd.pool import DataPool


def test_pool_add_load_truncate_and_bound(tmp_path):
    pool = DataPool(tmp_path, key="k")
    for i in range(3):
        pool.add(torch.full((2, 1, 2, 2), i / 255.0), torch.tensor([i, i]))
    assert len(pool) == 6 and pool.n_batches == 3
    x, y = pool.tensors()
    assert x.dtype == torch.uint8 and x[:, 0, 0, 0].tolist() == [0, 0, 1, 1, 2, 2] and y.tolist() == [0, 0, 1, 1, 2, 2]

    again = DataPool(tmp_path, key="k")
    again.load(2)  # a checkpoint taken after two batches: the third file is deleted
    assert len(again) == 4 and sorted(p.name for p in tmp_path.glob("*.pt")) == ["000000.pt", "000001.pt"]
    assert torch.equal(again.tensors()[0], x[:4])

    bounded = DataPool(tmp_path, key="k", bound=3)
    bounded.load(2)
    assert len(bounded) == 3 and bounded.tensors()[1].tolist() == [0, 1, 1]  # the newest three images
