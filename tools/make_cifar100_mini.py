"""Build the embedded ``cifar100-mini`` subset (shipped in ``benchmark/data_files``) from a full CIFAR-100 array
file: the first 20 training and 5 test images of every class, in the file's order (for the team's
``../shared/data`` copy that order is by SHA-1 within each class, i.e. arbitrary but fixed).

    python tools/make_cifar100_mini.py ~/.cache/rgal-bench/data/cifar100.npz benchmark/data_files/cifar100_mini.npz
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
    main(sys.argv[1], sys.argv[2])
