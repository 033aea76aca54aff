#!/usr/bin/python3
"""PyTorch side of tools/bench/bench_meta.c: the same meta-learning work,
timed in the same run. Prints one `torch_<name> <value>` line per figure.

Usage: torch_meta.py sinusoid [steps] | transformer [steps]
  Second-order MAML on sinusoids: 1-40-40-1 ReLU MLP, K=10 support and 10
  query points, one inner SGD step (a = 0.01), meta-batch 25, Adam 1e-3.
  Reports milliseconds per meta-step (tasks generated once, outside timing).
transformer: the prompted ViT of src/model/transformer.c (28x28 images,
  7x7 patches, d=64, 2 pre-LN blocks, 4 heads, MLP 128, GELU (the exact erf
  form, as the library), 8 prompt
  tokens without positions, mean over the real tokens, linear head), 4-way
  5-shot 15-query tasks, meta-batch 4, 5 inner steps on prompt + head,
  second order, backbone frozen; also the process's peak RSS.
"""
import os

# One thread for PyTorch means one OpenBLAS thread too: torch.set_num_threads
# does not reach the BLAS that Debian's torch calls, whose own threads made
# its small products 20-30 % slower (must be set before torch loads it).
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import resource
import sys
import time

import numpy as np
import torch

torch.set_num_threads(1)


def mlp_params(gen):
    sizes = [(1, 40), (40, 40), (40, 1)]
    ps = []
    for fan_in, fan_out in sizes:
        w = torch.randn(fan_in, fan_out, generator=gen) * (2.0 / fan_in) ** 0.5
        ps += [w.requires_grad_(), torch.zeros(fan_out, requires_grad=True)]
    return ps


def forward(ps, x):
    h = torch.relu(x @ ps[0] + ps[1])
    h = torch.relu(h @ ps[2] + ps[3])
    return h @ ps[4] + ps[5]


def sinusoid_tasks(rng, n, k):
    tasks = []
    for _ in range(n):
        a, ph = rng.uniform(0.1, 5.0), rng.uniform(0, np.pi)
        xs, xq = rng.uniform(-5, 5, (k, 1)), rng.uniform(-5, 5, (k, 1))
        f = lambda x: a * np.sin(x - ph)
        tasks.append(tuple(torch.tensor(v, dtype=torch.float32) for v in (xs, f(xs), xq, f(xq))))
    return tasks


def maml_step(ps, opt, tasks, inner_lr):
    opt.zero_grad()
    total = 0.0
    for xs, ys, xq, yq in tasks:
        loss = torch.mean((forward(ps, xs) - ys) ** 2)
        grads = torch.autograd.grad(loss, ps, create_graph=True)
        fast = [p - inner_lr * g for p, g in zip(ps, grads)]
        total = total + torch.mean((forward(fast, xq) - yq) ** 2)
    (total / len(tasks)).backward()
    opt.step()


def bench_sinusoid(steps):
    gen = torch.Generator().manual_seed(0)
    ps = mlp_params(gen)
    opt = torch.optim.Adam(ps, lr=1e-3)
    tasks = sinusoid_tasks(np.random.default_rng(0), 25, 10)
    for _ in range(5):
        maml_step(ps, opt, tasks, 0.01)
    t0 = time.perf_counter()
    for _ in range(steps):
        maml_step(ps, opt, tasks, 0.01)
    ms = (time.perf_counter() - t0) * 1000.0 / steps
    print("torch_sinusoid_ms %.4f" % ms)
    print("torch_peak_rss_kb %d" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def tf_params(gen, d=64, layers=2, mlp=128, P=8, classes=4):
    def rn(*shape, std):
        return torch.randn(*shape, generator=gen) * std
    bb = {"embed_w": rn(d, 1, 7, 7, std=(1 / 49) ** 0.5), "embed_b": torch.zeros(d),
          "pos": rn(16, d, std=0.02), "lnf_w": torch.ones(d), "lnf_b": torch.zeros(d), "layers": []}
    for _ in range(layers):
        l = {"ln1_w": torch.ones(d), "ln1_b": torch.zeros(d), "ln2_w": torch.ones(d), "ln2_b": torch.zeros(d),
             "fc1_w": rn(d, mlp, std=(2 / d) ** 0.5), "fc1_b": torch.zeros(mlp),
             "fc2_w": rn(mlp, d, std=(2 / (d + mlp)) ** 0.5), "fc2_b": torch.zeros(d)}
        for n in "qkvo":
            l[n + "_w"], l[n + "_b"] = rn(d, d, std=(1 / d) ** 0.5), torch.zeros(d)
        bb["layers"].append(l)
    fast = [rn(P, d, std=0.02).requires_grad_(), rn(d, classes, std=(2 / (d + classes)) ** 0.5).requires_grad_(),
            torch.zeros(classes, requires_grad=True)]
    return bb, fast


def tf_forward(bb, fast, x, heads=4):
    F = torch.nn.functional
    prompt, hw, hb = fast
    n, d, P = x.shape[0], prompt.shape[1], prompt.shape[0]
    e = F.conv2d(x.view(n, 1, 28, 28), bb["embed_w"], bb["embed_b"], stride=7).flatten(2).transpose(1, 2)
    h = torch.cat([prompt.expand(n, P, d), e + bb["pos"]], 1)
    T, dh = h.shape[1], d // heads
    for l in bb["layers"]:
        a = F.layer_norm(h, (d,), l["ln1_w"], l["ln1_b"], 1e-5)
        q, k, v = [(a @ l[c + "_w"] + l[c + "_b"]).view(n, T, heads, dh).transpose(1, 2) for c in "qkv"]
        att = torch.softmax(q @ k.transpose(-1, -2) / dh ** 0.5, -1) @ v
        h = h + att.transpose(1, 2).reshape(n, T, d) @ l["o_w"] + l["o_b"]
        a2 = F.layer_norm(h, (d,), l["ln2_w"], l["ln2_b"], 1e-5)
        h = h + F.gelu(a2 @ l["fc1_w"] + l["fc1_b"]) @ l["fc2_w"] + l["fc2_b"]
    f = F.layer_norm(h, (d,), bb["lnf_w"], bb["lnf_b"], 1e-5)
    return f[:, P:, :].mean(1) @ hw + hb


def tf_step(bb, fast, opt, tasks, inner_lr=0.1, steps=5):
    F = torch.nn.functional
    opt.zero_grad()
    total = 0.0
    for xs, ys, xq, yq in tasks:
        w = fast
        for _ in range(steps):
            g = torch.autograd.grad(F.cross_entropy(tf_forward(bb, w, xs), ys), w, create_graph=True)
            w = [p - inner_lr * gi for p, gi in zip(w, g)]
        total = total + F.cross_entropy(tf_forward(bb, w, xq), yq)
    (total / len(tasks)).backward()
    opt.step()


def bench_transformer(steps):
    gen = torch.Generator().manual_seed(0)
    bb, fast = tf_params(gen)
    opt = torch.optim.Adam(fast, lr=1e-3)
    rng = np.random.default_rng(0)
    lab = lambda k: torch.tensor(np.repeat(np.arange(4), k), dtype=torch.long)
    tasks = [(torch.tensor(rng.uniform(0, 1, (20, 784)), dtype=torch.float32), lab(5),
              torch.tensor(rng.uniform(0, 1, (60, 784)), dtype=torch.float32), lab(15)) for _ in range(4)]
    for _ in range(2):
        tf_step(bb, fast, opt, tasks)
    t0 = time.perf_counter()
    for _ in range(steps):
        tf_step(bb, fast, opt, tasks)
    print("torch_transformer_ms %.4f" % ((time.perf_counter() - t0) * 1000.0 / steps))
    print("torch_peak_rss_kb %d" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "sinusoid"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    if what == "sinusoid":
        bench_sinusoid(n)
    elif what == "transformer":
        bench_transformer(n)
    else:
        sys.exit("unknown benchmark " + what)
