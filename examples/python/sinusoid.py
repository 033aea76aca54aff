#!/usr/bin/python3
"""MAML on sinusoid regression (Finn et al. 2017) through the Python binding,
then adaptation to a new sine wave from 10 points: the Python version of
examples/sinusoid.c.

    PYTHONPATH=examples/python /usr/bin/python3 examples/python/sinusoid.py [iters]
"""
import sys

import numpy as np

import metaprompt as mp


def main(iters=2000, meta_batch=25):
    print("libmetaprompt %s, OpenBLAS core %s" % (mp.version_string(), mp.blas_corename()))
    cfg = mp.Config({
        mp.CFG_MODEL_KIND: mp.MODEL_MLP,             # 1-40-40-1 ReLU net, no prompt
        mp.CFG_MODEL_TASK: mp.TASK_REGRESSION,
        mp.CFG_MODEL_PROMPT_LEN: 0,
        mp.CFG_MODEL_INIT: mp.INIT_TORCH,            # PyTorch's default init, as the paper
        mp.CFG_DATA_SHOTS: 10,                       # K = 10 support points
        mp.CFG_META_SCOPE: mp.SCOPE_ALL,             # plain MAML: adapt every weight
        mp.CFG_META_INNER_LR: 0.01,
    })
    with mp.Model(cfg) as net, mp.Prompt(net) as prompt, \
            mp.Sampler.sinusoid(cfg) as tasks, mp.Meta(net, prompt, cfg) as maml:
        batch = [tasks.episode(i) for i in range(meta_batch)]  # reused below
        for it in range(iters):                      # meta-batches of 25 tasks
            for b in range(meta_batch):
                tasks.episode_into(tasks.position, batch[b])   # refill in place
                tasks.position += 1
            stats = maml.step(batch)
            if (it + 1) % max(iters // 10, 1) == 0:
                print("iter %5d  query MSE before %.3f  after one step %.3f"
                      % (it + 1, stats["loss_before"], stats["loss_after"]))
        mse, ci = maml.evaluate(tasks, 1000000, 600)  # 600 new sine waves
        print("test MSE after adaptation: %.3f +/- %.3f" % (mse, ci))

        # One new wave: adapt on its 10 support points, predict on a grid.
        wave = mp.Task.sinusoid(seed=7, index=123456, k_support=10, k_query=10)
        amp, phase = wave.sinusoid_params()
        adapted = net.clone()
        maml.adapt(wave, out_model=adapted)
        grid = np.linspace(-5, 5, 11, dtype=np.float32).reshape(-1, 1)
        truth = amp * np.sin(grid - phase)
        before = net.predict(grid)
        after = adapted.predict(grid)
        print("new wave A=%.2f phase=%.2f: grid MSE before %.3f, after adaptation %.3f"
              % (amp, phase, float(np.mean((before - truth) ** 2)),
                 float(np.mean((after - truth) ** 2))))
        for b in batch:
            b.close()
        adapted.close()
    return mse


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
