#!/usr/bin/python3
"""Writes tests/fixtures/tape_ops.txt: PyTorch reference values for every tape
op and a few composed graphs (a 2-layer MLP loss, an attention block, a
conv+pool+linear net).

For each case the inputs x_i, a weight W and directions v_i are drawn here;
PyTorch (float64) computes out = f(x), L = sum(W * out + 0.5 * out^2), the
gradients dL/dx_i and the Hessian-vector products H v (double backward).
tests/test_tape.c rebuilds the same case by name from the same inputs and
compares. The case table (names, shapes, input modes, integer arguments) must
match the `cases` table in tests/test_tape.c.

Format, one record per line, values in %.9g:
  case <name> <nin>
  x <rows> <cols> v...        (nin lines)
  v <rows> <cols> v...        (nin lines)
  w <rows> <cols> v...
  out <rows> <cols> v...
  g <rows> <cols> v...        (nin lines)
  hv <rows> <cols> v...       (nin lines)
  end
Run: /usr/bin/python3 tools/gen_tape_fixtures.py  (needs torch and numpy)
"""
import os

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "tape_ops.txt")

CE_LABELS = [0, 2, 1]
GATHER_IDX = [2, 0, 2, 3, 1]


def bmm(a, b, batch, ta, tb):
    a3 = a.reshape(batch, a.shape[0] // batch, a.shape[1])
    b3 = b.reshape(batch, b.shape[0] // batch, b.shape[1])
    if ta:
        a3 = a3.transpose(1, 2)
    if tb:
        b3 = b3.transpose(1, 2)
    r = torch.bmm(a3, b3)
    return r.reshape(-1, r.shape[2])


def split_heads(x, batch, seq, heads):
    dh = x.shape[1] // heads
    return x.reshape(batch, seq, heads, dh).permute(0, 2, 1, 3).reshape(batch * heads * seq, dh)


def merge_heads(x, batch, seq, heads):
    dh = x.shape[1]
    return x.reshape(batch, heads, seq, dh).permute(0, 2, 1, 3).reshape(batch * seq, heads * dh)


def conv(x, w, b, c, h, wd, k, s, p):
    n, f = x.shape[0], w.shape[0]
    y = F.conv2d(x.reshape(n, c, h, wd), w.reshape(f, c, k, k), None if b is None else b.reshape(-1), stride=s, padding=p)
    return y.reshape(n, -1)


def maxpool(x, c, h, w):
    return F.max_pool2d(x.reshape(x.shape[0], c, h, w), 2).reshape(x.shape[0], -1)


def layer_norm(x, g, b):
    return F.layer_norm(x, (x.shape[1],), None if g is None else g.reshape(-1), None if b is None else b.reshape(-1), eps=1e-5)


def mlp(x, w1, b1, w2, b2):
    target = torch.tensor([[0.5], [-0.25], [1.0], [0.0]])
    return F.mse_loss(torch.tanh(x @ w1 + b1) @ w2 + b2, target).reshape(1, 1)


def attention(x, wq, wk, wv):
    n = layer_norm(x, None, None)
    q, k, v = (split_heads(n @ w, 2, 3, 2) for w in (wq, wk, wv))
    s = bmm(q, k, 4, 0, 1) * 0.70710678
    a = bmm(torch.softmax(s, dim=1), v, 4, 0, 0)
    return x + F.gelu(merge_heads(a, 2, 3, 2))


def conv_net(x, w, b, wl):
    r = torch.relu(conv(x, w, b, 1, 4, 4, 3, 1, 1))
    y = maxpool(r, 2, 4, 4) @ wl
    return F.cross_entropy(y, torch.tensor([1, 2])).reshape(1, 1)


U, P, A, D, B = range(5)
CASES = [
    ("matmul_nn", [(3, 4), (4, 5)], [U, U], lambda a, b: a @ b),
    ("matmul_tn", [(4, 3), (4, 5)], [U, U], lambda a, b: a.T @ b),
    ("matmul_nt", [(3, 4), (5, 4)], [U, U], lambda a, b: a @ b.T),
    ("matmul_tt", [(4, 3), (5, 4)], [U, U], lambda a, b: a.T @ b.T),
    ("matmul_same", [(3, 4)], [U], lambda a: a.T @ a),
    ("add", [(3, 4), (3, 4)], [U, U], torch.add),
    ("add_row", [(3, 4), (1, 4)], [U, U], torch.add),
    ("add_col", [(3, 4), (3, 1)], [U, U], torch.add),
    ("add_scalar1", [(3, 4), (1, 1)], [U, U], torch.add),
    ("add_outer", [(3, 1), (1, 4)], [U, U], torch.add),
    ("sub_row", [(1, 4), (3, 4)], [U, U], torch.sub),
    ("sub_col", [(3, 4), (3, 1)], [U, U], torch.sub),
    ("mul", [(3, 4), (3, 4)], [U, U], torch.mul),
    ("mul_row", [(3, 4), (1, 4)], [U, U], torch.mul),
    ("mul_col", [(3, 4), (3, 1)], [U, U], torch.mul),
    ("div", [(3, 4), (3, 4)], [U, P], torch.div),
    ("div_row", [(3, 4), (1, 4)], [U, P], torch.div),
    ("div_col", [(3, 4), (3, 1)], [U, P], torch.div),
    ("add_xx", [(3, 4)], [U], lambda a: a + a),
    ("mul_xx", [(3, 4)], [U], lambda a: a * a),
    ("div_xx", [(3, 4)], [P], lambda a: a / a),
    ("scale", [(3, 4)], [U], lambda a: -1.5 * a),
    ("add_scalar", [(3, 4)], [U], lambda a: a + 0.75),
    ("sum_all", [(3, 4)], [U], lambda a: a.sum().reshape(1, 1)),
    ("sum_row", [(3, 4)], [U], lambda a: a.sum(1, keepdim=True)),
    ("sum_col", [(3, 4)], [U], lambda a: a.sum(0, keepdim=True)),
    ("mean_all", [(3, 4)], [U], lambda a: a.mean().reshape(1, 1)),
    ("mean_row", [(3, 4)], [U], lambda a: a.mean(1, keepdim=True)),
    ("mean_col", [(3, 4)], [U], lambda a: a.mean(0, keepdim=True)),
    ("relu", [(3, 4)], [A], torch.relu),
    ("tanh", [(3, 4)], [B], torch.tanh),
    ("sigmoid", [(3, 4)], [B], torch.sigmoid),
    ("gelu", [(3, 4)], [B], F.gelu),  # exact (erf) form, PyTorch's default
    ("exp", [(3, 4)], [U], torch.exp),
    ("log", [(3, 4)], [P], torch.log),
    ("sqrt", [(3, 4)], [P], torch.sqrt),
    ("square", [(3, 4)], [U], torch.square),
    ("softmax", [(3, 4)], [B], lambda a: torch.softmax(a, 1)),
    ("log_softmax", [(3, 4)], [B], lambda a: torch.log_softmax(a, 1)),
    ("cross_entropy", [(3, 4)], [B], lambda a: F.cross_entropy(a, torch.tensor(CE_LABELS)).reshape(1, 1)),
    ("mse", [(3, 4), (3, 4)], [U, U], lambda a, b: F.mse_loss(a, b).reshape(1, 1)),
    ("layer_norm", [(3, 5), (1, 5), (1, 5)], [B, U, U], layer_norm),
    ("layer_norm_plain", [(3, 5)], [B], lambda a: layer_norm(a, None, None)),
    ("gather_rows", [(4, 3)], [U], lambda a: a[torch.tensor(GATHER_IDX)]),
    ("concat_rows", [(2, 3), (4, 3)], [U, U], lambda a, b: torch.cat([a, b], 0)),
    ("concat_cols", [(3, 2), (3, 4)], [U, U], lambda a, b: torch.cat([a, b], 1)),
    ("slice_rows", [(4, 3)], [U], lambda a: a[1:3]),
    ("slice_cols", [(3, 5)], [U], lambda a: a[:, 1:4]),
    ("reshape", [(3, 4)], [U], lambda a: a.reshape(2, 6)),
    ("transpose", [(3, 4)], [U], lambda a: a.T),
    ("conv2d", [(2, 32), (3, 18), (1, 3)], [U, U, U], lambda x, w, b: conv(x, w, b, 2, 4, 4, 3, 1, 1)),
    ("conv2d_s2", [(2, 25), (2, 9)], [U, U], lambda x, w: conv(x, w, None, 1, 5, 5, 3, 2, 0)),
    ("maxpool2d", [(2, 32)], [D], lambda x: maxpool(x, 2, 4, 4)),
    ("batch_matmul_nn", [(6, 4), (8, 2)], [U, U], lambda a, b: bmm(a, b, 2, 0, 0)),
    ("batch_matmul_nt", [(6, 4), (4, 4)], [U, U], lambda a, b: bmm(a, b, 2, 0, 1)),
    ("batch_matmul_tn", [(8, 3), (8, 2)], [U, U], lambda a, b: bmm(a, b, 2, 1, 0)),
    ("split_heads", [(6, 4)], [U], lambda x: split_heads(x, 2, 3, 2)),
    ("merge_heads", [(12, 2)], [U], lambda x: merge_heads(x, 2, 3, 2)),
    ("mlp", [(4, 3), (3, 5), (1, 5), (5, 1), (1, 1)], [U] * 5, mlp),
    ("attention", [(6, 4), (4, 4), (4, 4), (4, 4)], [U] * 4, attention),
    ("conv_net", [(2, 16), (2, 9), (1, 2), (8, 3)], [U] * 4, conv_net),
    # Appended (the random stream is sequential: earlier cases keep their values).
    ("div_left_row", [(1, 4), (3, 4)], [U, P], torch.div),
    ("div_left_col", [(3, 1), (3, 4)], [U, P], torch.div),
    ("mul_left_col", [(3, 1), (3, 4)], [U, U], torch.mul),
    ("batch_matmul_tt", [(8, 3), (6, 4)], [U, U], lambda a, b: bmm(a, b, 2, 1, 1)),
    # mp__heads_matmul: operands in the merged multi-head layout, used in place
    # (2 examples, seq 3, 2 heads of width 2); the reference splits and merges.
    ("heads_qk", [(6, 4), (6, 4)], [U, U],
     lambda q, k: bmm(split_heads(q, 2, 3, 2), split_heads(k, 2, 3, 2), 4, 0, 1)),
    ("heads_pv", [(12, 3), (6, 4)], [U, U],
     lambda p, v: merge_heads(bmm(p, split_heads(v, 2, 3, 2), 4, 0, 0), 2, 3, 2)),
    ("heads_tn", [(6, 4), (6, 4)], [U, U],
     lambda a, b: -1.5 * bmm(split_heads(a, 2, 3, 2), split_heads(b, 2, 3, 2), 4, 1, 0)),
    ("heads_attention", [(6, 4), (4, 4), (4, 4), (4, 4)], [U] * 4, attention),
    # The fused linear layer (mp__linear; 70 rows: two row blocks of the plain
    # product) and x * s + b (mp__scale_shift, layer norm's affine).
    ("linear_nn", [(3, 4), (4, 5), (1, 5)], [U] * 3, lambda a, w, b: a @ w + b),
    ("linear_tt", [(4, 3), (5, 4), (1, 5)], [U] * 3, lambda a, w, b: a.T @ w.T + b),
    ("linear_blocks", [(70, 3), (3, 2), (1, 2)], [U] * 3, lambda a, w, b: a @ w + b),
    ("linear_blocks_nt", [(70, 3), (2, 3), (1, 2)], [U] * 3, lambda a, w, b: a @ w.T + b),
    ("scale_shift_row", [(3, 4), (1, 4), (1, 4)], [U] * 3, lambda x, s, b: x * s + b),
    ("scale_shift_col", [(3, 4), (3, 1), (3, 1)], [U] * 3, lambda x, s, b: x * s + b),
    ("scale_shift_mixed", [(3, 4), (1, 1), (3, 4)], [U] * 3, lambda x, s, b: x * s + b),
    ("scale_shift_full", [(3, 4), (3, 4), (1, 1)], [U] * 3, lambda x, s, b: x * s + b),
    # Heads of width 1 (the patch embedding's per-example transpose).
    ("split_heads_dh1", [(6, 4)], [U], lambda x: split_heads(x, 2, 3, 4)),
    ("merge_heads_dh1", [(24, 1)], [U], lambda x: merge_heads(x, 2, 3, 4)),
    # mp__concat_bcast: the one-row operand repeated for the other's rows.
    ("concat_bcast_left", [(1, 3), (4, 2)], [U, U], lambda a, b: torch.cat([a.expand(4, -1), b], 1)),
    ("concat_bcast_right", [(4, 2), (1, 3)], [U, U], lambda a, b: torch.cat([a, b.expand(4, -1)], 1)),
]


def gen(rng, shape, mode):
    n = shape[0] * shape[1]
    if mode == P:
        x = rng.uniform(0.5, 2.0, n)
    elif mode == A:
        x = rng.choice([-1.0, 1.0], n) * rng.uniform(0.2, 1.0, n)
    elif mode == B:
        x = rng.uniform(-3.0, 3.0, n)
    elif mode == D:
        x = rng.permutation(n) * 0.05
    else:
        x = rng.uniform(-1.0, 1.0, n)
    return x.reshape(shape)


def row(tag, a):
    a = np.asarray(a, dtype=np.float64)
    vals = " ".join("%.9g" % v for v in a.reshape(-1))
    return "%s %d %d %s\n" % (tag, a.shape[0], a.shape[1], vals)


def main():
    rng = np.random.default_rng(20261203)
    lines = []
    for name, shapes, modes, fn in CASES:
        xs = [torch.tensor(gen(rng, s, m), requires_grad=True) for s, m in zip(shapes, modes)]
        vs = [torch.tensor(rng.uniform(-1.0, 1.0, s)) for s in shapes]
        out = fn(*xs)
        w = torch.tensor(rng.uniform(-1.0, 1.0, tuple(out.shape)))
        loss = (w * out + 0.5 * out * out).sum()
        gs = torch.autograd.grad(loss, xs, create_graph=True)
        s = sum((g * v).sum() for g, v in zip(gs, vs))
        hvs = torch.autograd.grad(s, xs, allow_unused=True)
        hvs = [torch.zeros_like(x) if h is None else h for x, h in zip(xs, hvs)]
        lines.append("case %s %d\n" % (name, len(xs)))
        lines += [row("x", x.detach()) for x in xs]
        lines += [row("v", v) for v in vs]
        lines.append(row("w", w))
        lines.append(row("out", out.detach()))
        lines += [row("g", g.detach()) for g in gs]
        lines += [row("hv", h) for h in hvs]
        lines.append("end\n")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("# PyTorch %s reference values for the tape; written by tools/gen_tape_fixtures.py\n" % torch.__version__)
        f.writelines(lines)
    print("wrote %s (%d cases, %d bytes)" % (OUT, len(CASES), os.path.getsize(OUT)))


if __name__ == "__main__":
    main()
