#!/usr/bin/python3
"""PyTorch side of tools/bench/bench_meta.c: the same meta-learning work,
timed in the same run. Prints one `torch_<name> <value>` line per figure.

Usage: torch_meta.py sinusoid [steps]
  Second-order MAML on sinusoids: 1-40-40-1 ReLU MLP, K=10 support and 10
  query points, one inner SGD step (a = 0.01), meta-batch 25, Adam 1e-3.
  Reports milliseconds per meta-step (tasks generated once, outside timing).
"""
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


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "sinusoid"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    if what == "sinusoid":
        bench_sinusoid(n)
    else:
        sys.exit("unknown benchmark " + what)
