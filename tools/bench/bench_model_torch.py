#!/usr/bin/python3
"""PyTorch side of examples/bench_model.c: the same three model kinds
(architectures from tools/gen_model_fixtures.py), float32, one thread,
timing forward and forward+backward (gradients of every parameter and the
prompt). Prints `torch <name> <value>` lines for the C bench to read."""
import os

# One thread for PyTorch means one OpenBLAS thread too: torch.set_num_threads
# does not reach the BLAS that Debian's torch calls, whose own threads made
# its small products 20-30 % slower (must be set before torch loads it).
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import gen_model_fixtures as g  # noqa: E402

torch.set_num_threads(1)

CASES = {
    "mlp_sinusoid": ({g.KIND: g.MLP, g.INPUT_DIM: 1, g.OUTPUT_DIM: 1, g.TASK: g.REG, g.PROMPT_LEN: 0,
                      g.PROMPT_DIM: 1, g.HIDDEN_LAYERS: 2, g.HIDDEN_WIDTH: 40, g.ACTIVATION: g.RELU}, 20),
    "conv4_28x28": ({g.KIND: g.CONV, g.OUTPUT_DIM: 5, g.TASK: g.CLS, g.PROMPT_LEN: 1, g.PROMPT_DIM: 784,
                     g.IMAGE_H: 28, g.IMAGE_W: 28, g.IMAGE_C: 1, g.CHANNELS: 64, g.CONV_BLOCKS: 4,
                     g.PROMPT_MODE: 1, g.VOCAB: 0}, 80),
    "vit_d64_28x28": ({g.KIND: g.TRANSFORMER, g.OUTPUT_DIM: 5, g.TASK: g.CLS, g.PROMPT_LEN: 8,
                       g.PROMPT_DIM: 64, g.IMAGE_H: 28, g.IMAGE_W: 28, g.IMAGE_C: 1, g.PATCH: 7,
                       g.D_MODEL: 64, g.LAYERS: 2, g.HEADS: 4, g.MLP_DIM: 128, g.VOCAB: 0}, 80),
}


def best_ms(fn, reps=5):
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def main():
    for name, (cfg, n) in CASES.items():
        gen = torch.Generator().manual_seed(0)
        torch.set_default_dtype(torch.float64)
        p = g.Params(gen)
        kind = cfg[g.KIND]
        if kind == g.MLP:
            g.mlp_params(p, cfg, cfg[g.INPUT_DIM])
        elif kind == g.CONV:
            g.conv_params(p, cfg)
        else:
            g.tf_params(p, cfg)
        torch.set_default_dtype(torch.float32)
        params = {k: p[k].detach().float().requires_grad_(True) for k in p.names}
        prompt = (0.1 * torch.randn(cfg[g.PROMPT_LEN], cfg[g.PROMPT_DIM])).requires_grad_(True)
        x = torch.rand(n, g.input_dim(cfg))
        fwd = {g.MLP: g.mlp_forward, g.CONV: g.conv_forward, g.TRANSFORMER: g.tf_forward}[kind]
        y = torch.randint(0, cfg[g.OUTPUT_DIM], (n,))
        t = torch.randn(n, cfg[g.OUTPUT_DIM])
        leaves = list(params.values()) + ([prompt] if prompt.numel() else [])

        def forward():
            with torch.no_grad():
                fwd(params, cfg, prompt, x)

        def step():
            out = fwd(params, cfg, prompt, x)
            loss = F.cross_entropy(out, y) if cfg[g.TASK] == g.CLS else ((out - t) ** 2).mean()
            torch.autograd.grad(loss, leaves)

        print("torch %s_forward_ms %.4f" % (name, best_ms(forward)))
        print("torch %s_fwd_bwd_ms %.4f" % (name, best_ms(step)))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
