"""Build an embedded mini subset (shipped in ``benchmark/data_files``) from a full array file: the first
``n_train`` training and ``n_test`` test images of every class, in the file's order (for the team's
``../shared/data`` copies that order is by SHA-1 within each class, i.e. arbitrary but fixed).

    python tools/make_mini_subset.py ~/.cache/rgal-bench/data/cifar100.npz benchmark/data_files/cifar100_mini.npz 20 5
    python tools/make_mini_subset.py ~/.cache/rgal-bench/data/cifar10.npz benchmark/data_files/cifar10_mini.npz 50 5

``cifar100-mini`` is the offline default scenario; ``cifar10-mini`` is the offline auxiliary (out-of-distribution)
data of MUC for it (``baselines/muc.py``).
"""
import sys

import numpy as np


def main(src: str, dst: str, n_train: int = 20, n_test: int = 5) -> None:
    d = np.load(src)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = d[f"y_{split}"].astype(np.int64)
        idx = np.concatenate([np.flatnonzero(y == c)[:n] for c in range(int(y.max()) + 1)])
        out[f"x_{split}"], out[f"y_{split}"] = d[f"x_{split}"][idx], y[idx]
    np.savez_compressed(dst, classes=d["classes"], **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:5]))
