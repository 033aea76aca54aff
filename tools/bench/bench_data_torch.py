#!/usr/bin/python3
"""PyTorch side of examples/bench_data.c: the same loads and episode draws
done the usual Python way (gzip + numpy + torch, per-episode randperm and
index_select). Prints `torch <name> <value>` lines for the C bench to read."""
import os

# One thread for PyTorch means one OpenBLAS thread too: torch.set_num_threads
# does not reach the BLAS that Debian's torch calls, whose own threads made
# its small products 20-30 % slower (must be set before torch loads it).
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import gzip
import sys
import time

import numpy as np
import torch

torch.set_num_threads(1)
FM = "/usr/share/datasets/fashion-mnist/"
OMNI = sys.argv[1] if len(sys.argv) > 1 else ""


def load_idx(images, labels):
    with gzip.open(images, "rb") as f:
        b = f.read()
    nd = b[3]
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    x = torch.from_numpy(np.frombuffer(b, np.uint8, offset=4 + 4 * nd).copy()).float().div_(255)
    x = x.view(dims[0], -1)
    with gzip.open(labels, "rb") as f:
        lb = f.read()
    dt = np.uint8 if lb[2] == 8 else np.dtype(">i4")
    y = torch.from_numpy(np.frombuffer(lb, dt, offset=8).astype(np.int64))
    return x, y


def best_of(fn, reps):
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def episodes_per_s(x, y, n, k, q, count):
    classes = torch.unique(y)
    members = [torch.nonzero(y == c).flatten() for c in classes]
    g = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    for _ in range(count):
        chosen = torch.randperm(len(classes), generator=g)[:n]
        s_idx, q_idx = [], []
        for c in chosen.tolist():
            m = members[c]
            p = m[torch.randperm(len(m), generator=g)[:k + q]]
            s_idx.append(p[:k])
            q_idx.append(p[k:])
        s = torch.cat(s_idx)
        qq = torch.cat(q_idx)
        ps = torch.randperm(len(s), generator=g)
        pq = torch.randperm(len(qq), generator=g)
        # the episode's tensors (support x, query x, support labels, query labels): the work timed
        episode = (x.index_select(0, s[ps]), x.index_select(0, qq[pq]),
                   torch.arange(n).repeat_interleave(k)[ps], torch.arange(n).repeat_interleave(q)[pq])
    rate = count / (time.perf_counter() - t)
    del episode
    return rate


def main():
    if os.path.exists(FM + "train-images-idx3-ubyte.gz"):
        sec, (x, y) = best_of(lambda: load_idx(FM + "train-images-idx3-ubyte.gz",
                                                FM + "train-labels-idx1-ubyte.gz"), 3)
        print("torch load_fashion_mnist_train_ms %.1f" % (sec * 1e3))
        print("torch episodes_fmnist_5w1s15q_per_s %.0f" % episodes_per_s(x, y, 5, 1, 15, 2000))
    if OMNI and os.path.exists(OMNI + "/background-images-idx3-ubyte.gz"):
        sec, (x, y) = best_of(lambda: load_idx(OMNI + "/background-images-idx3-ubyte.gz",
                                                OMNI + "/background-labels-idx1-int.gz"), 3)
        print("torch load_omniglot_background_ms %.1f" % (sec * 1e3))
        print("torch episodes_omniglot_20w5s15q_per_s %.0f" % episodes_per_s(x, y, 20, 5, 15, 500))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
