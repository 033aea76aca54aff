#!/usr/bin/python3
"""Reference values for tests/test_model.c, computed with PyTorch.

For each case the same architecture as src/model is built in torch (float64
on float32-rounded values), with random weights stored in libmetaprompt's
layout (docs/MODELS.md): linear weights are in x out (torch's transposed),
conv and patch-embedding weights are out x (in*k*k) (torch's, flattened).
The fixture holds the configuration, every parameter tensor in model order,
the prompt, inputs, labels or targets, the outputs, the loss and the
gradient of the loss for the prompt and every parameter.

Fixture file: records of [u32 name length][name][u32 rows][u32 cols]
[rows*cols f32], little-endian. Run: tools/gen_model_fixtures.py (writes
tests/fixtures/model_*.bin).
"""
import math
import os
import struct

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")

# Key numbers (include/metaprompt/model.h).
KIND, INPUT_DIM, OUTPUT_DIM, TASK, PROMPT_LEN, PROMPT_DIM = 100, 101, 102, 103, 104, 105
HIDDEN_LAYERS, HIDDEN_WIDTH, ACTIVATION = 106, 107, 108
IMAGE_H, IMAGE_W, IMAGE_C, PATCH, VOCAB, SEQ_LEN = 109, 110, 111, 112, 113, 114
D_MODEL, LAYERS, HEADS, MLP_DIM, CHANNELS, CONV_BLOCKS, PROMPT_MODE = 115, 116, 117, 118, 119, 120, 121
MLP, TRANSFORMER, CONV = 1, 2, 3
CLS, REG = 1, 2
RELU, TANH, GELU, SIGMOID = 1, 2, 3, 4
ACTS = {RELU: torch.relu, TANH: torch.tanh, GELU: F.gelu, SIGMOID: torch.sigmoid}
EPS = 1e-5


class Params:
    """Ordered named tensors, created float32 then promoted to float64 leaves."""

    def __init__(self, gen):
        self.gen = gen
        self.names, self.t = [], {}

    def add(self, name, rows, cols, std=None, ones=False):
        if ones:
            v = 1.0 + 0.1 * torch.randn(rows, cols, generator=self.gen)
        else:
            v = (std if std is not None else 0.5) * torch.randn(rows, cols, generator=self.gen)
        self.names.append(name)
        self.t[name] = v.float().double().requires_grad_(True)
        return self.t[name]

    def __getitem__(self, name):
        return self.t[name]


def rnd(gen, *shape, scale=1.0):
    return (scale * torch.randn(*shape, generator=gen)).float().double()


# ---- architectures -----------------------------------------------------------------
def mlp_params(p, cfg, fan):
    for l in range(cfg[HIDDEN_LAYERS]):
        p.add("fc%d.weight" % l, fan, cfg[HIDDEN_WIDTH], std=1.0 / math.sqrt(fan))
        p.add("fc%d.bias" % l, 1, cfg[HIDDEN_WIDTH], std=0.1)
        fan = cfg[HIDDEN_WIDTH]
    p.add("head.weight", fan, cfg[OUTPUT_DIM], std=1.0 / math.sqrt(fan))
    p.add("head.bias", 1, cfg[OUTPUT_DIM], std=0.1)


def mlp_forward(p, cfg, prompt, x):
    n = x.shape[0]
    h = torch.cat([x, prompt.reshape(1, -1).expand(n, -1)], 1) if prompt.numel() else x
    for l in range(cfg[HIDDEN_LAYERS]):
        h = ACTS[cfg[ACTIVATION]](h @ p["fc%d.weight" % l] + p["fc%d.bias" % l])
    return h @ p["head.weight"] + p["head.bias"]


def conv_dims(cfg):
    h, w = cfg[IMAGE_H], cfg[IMAGE_W]
    for _ in range(cfg[CONV_BLOCKS]):
        h, w = h // 2, w // 2
    return h, w


def conv_params(p, cfg):
    cin = cfg[IMAGE_C] + (cfg[PROMPT_LEN] if cfg[PROMPT_MODE] == 1 else 0)
    f = cfg[CHANNELS]
    for b in range(cfg[CONV_BLOCKS]):
        p.add("conv%d.weight" % b, f, cin * 9, std=1.0 / math.sqrt(cin * 9))
        p.add("conv%d.bias" % b, 1, f, std=0.1)
        p.add("norm%d.weight" % b, 1, f, ones=True)
        p.add("norm%d.bias" % b, 1, f, std=0.1)
        cin = f
    h, w = conv_dims(cfg)
    feat = f * h * w + (cfg[PROMPT_LEN] * cfg[PROMPT_DIM] if cfg[PROMPT_MODE] == 2 else 0)
    p.add("head.weight", feat, cfg[OUTPUT_DIM], std=1.0 / math.sqrt(feat))
    p.add("head.bias", 1, cfg[OUTPUT_DIM], std=0.1)


def conv_forward(p, cfg, prompt, x):
    n, C, H, W, P = x.shape[0], cfg[IMAGE_C], cfg[IMAGE_H], cfg[IMAGE_W], cfg[PROMPT_LEN]
    h = x.reshape(n, C, H, W)
    if P and cfg[PROMPT_MODE] == 1:
        h = torch.cat([h, prompt.reshape(1, P, H, W).expand(n, -1, -1, -1)], 1)
    f = cfg[CHANNELS]
    for b in range(cfg[CONV_BLOCKS]):
        cin = h.shape[1]
        h = F.conv2d(h, p["conv%d.weight" % b].reshape(f, cin, 3, 3), p["conv%d.bias" % b].reshape(-1), padding=1)
        # Per-example, per-channel normalisation (instance norm, biased variance).
        mu = h.mean(dim=(2, 3), keepdim=True)
        var = ((h - mu) ** 2).mean(dim=(2, 3), keepdim=True)
        h = (h - mu) / torch.sqrt(var + EPS)
        h = h * p["norm%d.weight" % b].reshape(1, f, 1, 1) + p["norm%d.bias" % b].reshape(1, f, 1, 1)
        h = F.max_pool2d(torch.relu(h), 2)  # floor mode: odd maps lose their last row/column
    h = h.reshape(n, -1)
    if P and cfg[PROMPT_MODE] == 2:
        h = torch.cat([h, prompt.reshape(1, -1).expand(n, -1)], 1)
    return h @ p["head.weight"] + p["head.bias"]


def tf_params(p, cfg):
    d, M = cfg[D_MODEL], cfg[MLP_DIM]
    if cfg[VOCAB]:
        p.add("embed.weight", cfg[VOCAB], d, std=0.5)
        S = cfg[SEQ_LEN]
    else:
        k = cfg[IMAGE_C] * cfg[PATCH] ** 2
        p.add("embed.weight", d, k, std=1.0 / math.sqrt(k))
        p.add("embed.bias", 1, d, std=0.1)
        S = (cfg[IMAGE_H] // cfg[PATCH]) * (cfg[IMAGE_W] // cfg[PATCH])
    p.add("pos", S, d, std=0.3)
    for l in range(cfg[LAYERS]):
        pre = "block%d." % l
        p.add(pre + "ln1.weight", 1, d, ones=True)
        p.add(pre + "ln1.bias", 1, d, std=0.1)
        for nm in ("attn.q", "attn.k", "attn.v", "attn.out"):
            p.add(pre + nm + ".weight", d, d, std=1.0 / math.sqrt(d))
            p.add(pre + nm + ".bias", 1, d, std=0.1)
        p.add(pre + "ln2.weight", 1, d, ones=True)
        p.add(pre + "ln2.bias", 1, d, std=0.1)
        p.add(pre + "mlp.fc1.weight", d, M, std=1.0 / math.sqrt(d))
        p.add(pre + "mlp.fc1.bias", 1, M, std=0.1)
        p.add(pre + "mlp.fc2.weight", M, d, std=1.0 / math.sqrt(M))
        p.add(pre + "mlp.fc2.bias", 1, d, std=0.1)
    p.add("ln_f.weight", 1, d, ones=True)
    p.add("ln_f.bias", 1, d, std=0.1)
    p.add("head.weight", d, cfg[OUTPUT_DIM], std=1.0 / math.sqrt(d))
    p.add("head.bias", 1, cfg[OUTPUT_DIM], std=0.1)


def ln(x, w, b):
    return F.layer_norm(x, (x.shape[-1],), w.reshape(-1), b.reshape(-1), EPS)


def tf_forward(p, cfg, prompt, x):
    n, d, H, P = x.shape[0], cfg[D_MODEL], cfg[HEADS], cfg[PROMPT_LEN]
    if cfg[VOCAB]:
        tok = p["embed.weight"][x.long()]  # n x S x d
    else:
        C, k = cfg[IMAGE_C], cfg[PATCH]
        img = x.reshape(n, C, cfg[IMAGE_H], cfg[IMAGE_W])
        e = F.conv2d(img, p["embed.weight"].reshape(d, C, k, k), p["embed.bias"].reshape(-1), stride=k)
        tok = e.flatten(2).transpose(1, 2)  # n x S x d, patches in row-major order
    h = tok + p["pos"].unsqueeze(0)
    if P:
        h = torch.cat([prompt.unsqueeze(0).expand(n, -1, -1), h], 1)
    T, dh = h.shape[1], d // H
    for l in range(cfg[LAYERS]):
        pre = "block%d." % l
        a = ln(h, p[pre + "ln1.weight"], p[pre + "ln1.bias"])

        def proj(nm):
            return (a @ p[pre + nm + ".weight"] + p[pre + nm + ".bias"]).reshape(n, T, H, dh).transpose(1, 2)

        q, k_, v = proj("attn.q"), proj("attn.k"), proj("attn.v")
        att = torch.softmax(q @ k_.transpose(-1, -2) / math.sqrt(dh), dim=-1)
        o = (att @ v).transpose(1, 2).reshape(n, T, d)
        h = h + o @ p[pre + "attn.out.weight"] + p[pre + "attn.out.bias"]
        a = ln(h, p[pre + "ln2.weight"], p[pre + "ln2.bias"])
        f = F.gelu(a @ p[pre + "mlp.fc1.weight"] + p[pre + "mlp.fc1.bias"])
        h = h + f @ p[pre + "mlp.fc2.weight"] + p[pre + "mlp.fc2.bias"]
    h = ln(h, p["ln_f.weight"], p["ln_f.bias"])
    pooled = h[:, P:, :].mean(1)  # real tokens only
    return pooled @ p["head.weight"] + p["head.bias"]


# ---- cases -----------------------------------------------------------------------------
def input_dim(cfg):
    if cfg[KIND] == MLP:
        return cfg[INPUT_DIM]
    if cfg[KIND] == TRANSFORMER and cfg.get(VOCAB):
        return cfg[SEQ_LEN]
    return cfg[IMAGE_C] * cfg[IMAGE_H] * cfg[IMAGE_W]


def write_case(name, cfg, n, seed):
    gen = torch.Generator().manual_seed(seed)
    cfg = dict(cfg)
    for k in (VOCAB,):
        cfg.setdefault(k, 0)
    kind = cfg[KIND]
    p = Params(gen)
    P, d = cfg[PROMPT_LEN], cfg[PROMPT_DIM]
    if kind == MLP:
        mlp_params(p, cfg, cfg[INPUT_DIM] + P * d)
    elif kind == CONV:
        conv_params(p, cfg)
    else:
        tf_params(p, cfg)
    prompt = rnd(gen, P, d, scale=0.5).requires_grad_(True)
    D = input_dim(cfg)
    if kind == TRANSFORMER and cfg[VOCAB]:
        x = torch.randint(0, cfg[VOCAB], (n, D), generator=gen).double()
    else:
        x = rnd(gen, n, D)
    fwd = {MLP: mlp_forward, CONV: conv_forward, TRANSFORMER: tf_forward}[kind]
    out = fwd(p, cfg, prompt, x)
    recs = [("config", torch.tensor([[float(v) for kv in sorted(cfg.items()) for v in kv]]))]
    if cfg[TASK] == CLS:
        labels = torch.randint(0, cfg[OUTPUT_DIM], (n,), generator=gen)
        loss = F.cross_entropy(out, labels)
        recs.append(("labels", labels.double().reshape(1, n)))
    else:
        targets = rnd(gen, n, cfg[OUTPUT_DIM])
        loss = ((out - targets) ** 2).mean()
        recs.append(("targets", targets))
    loss.backward()
    for nm in p.names:
        recs.append(("param:" + nm, p[nm].detach()))
    recs += [("prompt", prompt.detach()), ("x", x), ("out", out.detach()),
             ("loss", loss.detach().reshape(1, 1))]
    recs.append(("grad:prompt", prompt.grad if prompt.grad is not None else torch.zeros(P, d)))
    for nm in p.names:
        recs.append(("grad:" + nm, p[nm].grad))
    path = os.path.join(OUT, "model_%s.bin" % name)
    with open(path, "wb") as f:
        for rname, t in recs:
            t = t if t.dim() == 2 else t.reshape(1, -1)
            b = rname.encode()
            f.write(struct.pack("<I", len(b)) + b + struct.pack("<II", t.shape[0], t.shape[1]))
            f.write(t.float().contiguous().numpy().astype("<f4").tobytes())
    print("%s: %d params, loss %.6f, %d bytes" % (path, sum(p[k].numel() for k in p.names),
                                                 loss.item(), os.path.getsize(path)))


def main():
    torch.set_default_dtype(torch.float64)
    os.makedirs(OUT, exist_ok=True)
    write_case("mlp", {KIND: MLP, INPUT_DIM: 3, OUTPUT_DIM: 2, TASK: REG, PROMPT_LEN: 2, PROMPT_DIM: 3,
                       HIDDEN_LAYERS: 2, HIDDEN_WIDTH: 8, ACTIVATION: TANH}, n=5, seed=1)
    write_case("mlp_cls", {KIND: MLP, INPUT_DIM: 3, OUTPUT_DIM: 4, TASK: CLS, PROMPT_LEN: 1, PROMPT_DIM: 4,
                           HIDDEN_LAYERS: 1, HIDDEN_WIDTH: 6, ACTIVATION: GELU}, n=6, seed=2)
    write_case("mlp_sig", {KIND: MLP, INPUT_DIM: 2, OUTPUT_DIM: 3, TASK: CLS, PROMPT_LEN: 3, PROMPT_DIM: 2,
                           HIDDEN_LAYERS: 3, HIDDEN_WIDTH: 5, ACTIVATION: SIGMOID}, n=4, seed=5)
    write_case("mlp_p0", {KIND: MLP, INPUT_DIM: 1, OUTPUT_DIM: 1, TASK: REG, PROMPT_LEN: 0, PROMPT_DIM: 1,
                          HIDDEN_LAYERS: 2, HIDDEN_WIDTH: 40, ACTIVATION: RELU}, n=7, seed=3)
    write_case("conv_in", {KIND: CONV, OUTPUT_DIM: 3, TASK: CLS, PROMPT_LEN: 1, PROMPT_DIM: 14 * 12,
                           IMAGE_H: 14, IMAGE_W: 12, IMAGE_C: 2, CHANNELS: 8, CONV_BLOCKS: 3,
                           PROMPT_MODE: 1}, n=3, seed=4)
    write_case("conv_head", {KIND: CONV, OUTPUT_DIM: 3, TASK: CLS, PROMPT_LEN: 2, PROMPT_DIM: 5,
                             IMAGE_H: 8, IMAGE_W: 8, IMAGE_C: 1, CHANNELS: 6, CONV_BLOCKS: 2,
                             PROMPT_MODE: 2}, n=3, seed=6)
    write_case("tf_patch", {KIND: TRANSFORMER, OUTPUT_DIM: 5, TASK: CLS, PROMPT_LEN: 3, PROMPT_DIM: 16,
                            IMAGE_H: 8, IMAGE_W: 8, IMAGE_C: 1, PATCH: 4, D_MODEL: 16, LAYERS: 2,
                            HEADS: 4, MLP_DIM: 32}, n=3, seed=7)
    write_case("tf_tok", {KIND: TRANSFORMER, OUTPUT_DIM: 3, TASK: CLS, PROMPT_LEN: 2, PROMPT_DIM: 8,
                          VOCAB: 11, SEQ_LEN: 5, D_MODEL: 8, LAYERS: 1, HEADS: 2, MLP_DIM: 16}, n=4, seed=8)
    # Prompt length 0 (plain MAML backbones): no prompt channels, features or tokens.
    write_case("conv_p0", {KIND: CONV, OUTPUT_DIM: 3, TASK: CLS, PROMPT_LEN: 0, PROMPT_DIM: 10 * 9,
                           IMAGE_H: 10, IMAGE_W: 9, IMAGE_C: 2, CHANNELS: 5, CONV_BLOCKS: 2,
                           PROMPT_MODE: 1}, n=3, seed=9)
    write_case("tf_patch_p0", {KIND: TRANSFORMER, OUTPUT_DIM: 4, TASK: CLS, PROMPT_LEN: 0, PROMPT_DIM: 16,
                               IMAGE_H: 8, IMAGE_W: 8, IMAGE_C: 1, PATCH: 4, D_MODEL: 16, LAYERS: 2,
                               HEADS: 4, MLP_DIM: 32}, n=3, seed=10)
    # Prompted patch transformers with no block (layer norm and pooling of the
    # embeddings only: the prompt cannot reach the output) and one block
    # (block 0 is also the last: the real tokens' queries only).
    write_case("tf_patch_l0", {KIND: TRANSFORMER, OUTPUT_DIM: 3, TASK: CLS, PROMPT_LEN: 2, PROMPT_DIM: 8,
                               IMAGE_H: 6, IMAGE_W: 4, IMAGE_C: 2, PATCH: 2, D_MODEL: 8, LAYERS: 0,
                               HEADS: 2, MLP_DIM: 16}, n=3, seed=11)
    write_case("tf_patch_l1", {KIND: TRANSFORMER, OUTPUT_DIM: 4, TASK: CLS, PROMPT_LEN: 3, PROMPT_DIM: 8,
                               IMAGE_H: 6, IMAGE_W: 6, IMAGE_C: 1, PATCH: 2, D_MODEL: 8, LAYERS: 1,
                               HEADS: 2, MLP_DIM: 16}, n=4, seed=12)


if __name__ == "__main__":
    main()
