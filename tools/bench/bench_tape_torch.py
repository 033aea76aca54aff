#!/usr/bin/python3
"""PyTorch side of examples/bench_tape.c: the same tiny-op chain, the same
matmul-dominated forward+backward and the same second-order MAML step on a
1-40-40-1 relu MLP, single-threaded. Prints `torch <name> <value>` lines
for the C bench to read."""
import os

# One thread for PyTorch means one OpenBLAS thread too: torch.set_num_threads
# does not reach the BLAS that Debian's torch calls, whose own threads made
# its small products 20-30 % slower (must be set before torch loads it).
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import time

import torch

torch.set_num_threads(1)


def best(fn, reps):
    b = 1e30
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        b = min(b, time.perf_counter() - t0)
    return b


def chain(with_backward):
    x = torch.tensor([[0.1, -0.2, 0.3, 0.4]], requires_grad=True)
    y = x
    for _ in range(10000 // 4):
        y = torch.tanh(y * x + x) * 0.5
    s = y.sum()
    if with_backward:
        s.backward()


def mlp_fwd_bwd(x, w1, w2):
    s = (torch.relu(x @ w1) @ w2).sum()
    torch.autograd.grad(s, [w1, w2])


def maml(steps, params, xs, ys, xq, yq):
    def mlp(p, x, y):
        h = torch.relu(x @ p[0] + p[1])
        h = torch.relu(h @ p[2] + p[3])
        return torch.nn.functional.mse_loss(h @ p[4] + p[5], y)

    q = params
    for _ in range(steps):
        g = torch.autograd.grad(mlp(q, xs, ys), q, create_graph=True)
        q = [p - 0.01 * gi for p, gi in zip(q, g)]
    torch.autograd.grad(mlp(q, xq, yq), params)


def main():
    print("torch tape_record_ns_per_op %g" % (best(lambda: chain(False), 10) / 10000 * 1e9))
    print("torch tape_record_backward_ns_per_op %g" % (best(lambda: chain(True), 10) / 10000 * 1e9))
    x = torch.randn(256, 512)
    w1 = (torch.randn(512, 512) * 0.05).requires_grad_()
    w2 = (torch.randn(512, 512) * 0.05).requires_grad_()
    print("torch tape_mlp_256x512_fwd_bwd_ms %g" % (best(lambda: mlp_fwd_bwd(x, w1, w2), 5) * 1e3))
    shapes = [(1, 40), (1, 40), (40, 40), (1, 40), (40, 1), (1, 1)]
    params = [(torch.randn(*s) * 0.1).requires_grad_() for s in shapes]
    xs, ys = torch.linspace(-5, 4, 10).reshape(10, 1), torch.linspace(0, 0.9, 10).reshape(10, 1)
    xq, yq = xs + 0.5, ys * 0.5
    for steps, name in ((1, "step"), (5, "5steps")):
        t = best(lambda: maml(steps, params, xs, ys, xq, yq), 200)
        print("torch tape_maml2_mlp_1_40_40_1_%s_us %g" % (name, t * 1e6))


if __name__ == "__main__":
    main()
