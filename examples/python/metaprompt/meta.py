"""meta.h: the meta-learner (MAML, FOMAML, Reptile, Meta-SGD)."""
import ctypes
import math

import numpy as np

from metaprompt._lib import (F, register, status, vp, cstr, i32, u64, size_t, c_void_pp,
                             c_float_p, c_double_p, c_int64_p, c_size_p, PROGRESS_FN)
from metaprompt._base import Handle, check, as_f32, fptr
from metaprompt.core import config_ptr

__all__ = ["Meta"]

register({
    "mp_meta_create": (status, [c_void_pp, vp, vp, vp]),
    "mp_meta_destroy": (None, [vp]),
    "mp_meta_error": (cstr, [vp]),
    "mp_meta_step": (status, [vp, ctypes.POINTER(vp), size_t, c_double_p, size_t]),
    "mp_meta_compute_gradients": (status, [vp, ctypes.POINTER(vp), size_t, c_double_p, size_t]),
    "mp_meta_gradient_size": (status, [vp, c_size_p]),
    "mp_meta_get_gradients": (status, [vp, c_float_p, size_t]),
    "mp_meta_set_gradients": (status, [vp, c_float_p, size_t]),
    "mp_meta_apply_gradients": (status, [vp]),
    "mp_meta_step_count": (status, [vp, c_int64_p]),
    "mp_meta_adapt": (status, [vp, vp, vp, vp]),
    "mp_meta_evaluate": (status, [vp, vp, u64, size_t, c_double_p, c_double_p]),
    "mp_meta_evaluate_tasks": (status, [vp, ctypes.POINTER(vp), size_t, c_double_p, c_double_p]),
    "mp_meta_set_progress": (status, [vp, PROGRESS_FN, vp]),
    "mp_meta_set_eval_steps": (status, [vp, i32]),
    "mp_meta_inner_lr_count": (status, [vp, c_size_p]),
    "mp_meta_get_inner_lr": (status, [vp, c_float_p, size_t]),
})

# Configuration keys (meta: 300-399) and enumerations.
CFG_META_ALGORITHM = 300
CFG_META_INNER_STEPS = 301
CFG_META_INNER_LR = 302
CFG_META_SCOPE = 303
CFG_META_LEARN = 304
CFG_META_OPTIMIZER = 305
CFG_META_OUTER_LR = 306
CFG_META_MOMENTUM = 307
CFG_META_BETA1 = 308
CFG_META_BETA2 = 309
CFG_META_EPSILON = 310
CFG_META_WEIGHT_DECAY = 311
CFG_META_CLIP_NORM = 312
CFG_META_EVAL_INNER_STEPS = 313
META_MAML, META_FOMAML, META_REPTILE, META_METASGD = 1, 2, 3, 4
SCOPE_PROMPT, SCOPE_PROMPT_HEAD, SCOPE_ALL = 1, 2, 3
LEARN_PROMPT, LEARN_HEAD, LEARN_BACKBONE, LEARN_INNER_LR = 1, 2, 4, 8
OPT_SGD, OPT_ADAM, OPT_ADAMW = 1, 2, 3
META_STAT_LOSS_BEFORE, META_STAT_LOSS_AFTER, META_STAT_ACC_BEFORE, META_STAT_ACC_AFTER = 0, 1, 2, 3
META_NUM_STATS = 4
__all__ += [n for n in list(globals()) if n.startswith(("CFG_META_", "META_", "SCOPE_", "LEARN_", "OPT_"))]


def _task_array(tasks):
    arr = (vp * len(tasks))(*[t.ptr for t in tasks])
    return arr, len(tasks)


class Meta(Handle):
    """A meta-learner over a model and its prompt (mp_meta). The model and
    prompt are borrowed (kept alive here) and updated in place by step()."""

    _destroy_fn = "mp_meta_destroy"
    _error_fn = "mp_meta_error"

    def __init__(self, model, prompt=None, cfg=None):
        p, keep = config_ptr(cfg)
        out = ctypes.c_void_p()
        check(F.mp_meta_create(ctypes.byref(out), model.ptr, prompt.ptr if prompt else None, p))
        Handle.__init__(self, out.value, owners=(model, prompt))
        self._progress = None

    def _batch(self, fn, tasks):
        arr, n = _task_array(tasks)
        stats = (ctypes.c_double * META_NUM_STATS)()
        self._check(fn(self.ptr, arr, n, stats, META_NUM_STATS))
        return {"loss_before": stats[0], "loss_after": stats[1], "acc_before": stats[2],
                "acc_after": stats[3]}

    def step(self, tasks):
        """One meta-update on a list of Tasks; returns the statistics."""
        return self._batch(F.mp_meta_step, tasks)

    def compute_gradients(self, tasks):
        return self._batch(F.mp_meta_compute_gradients, tasks)

    @property
    def gradient_size(self):
        n = ctypes.c_size_t()
        self._check(F.mp_meta_gradient_size(self.ptr, ctypes.byref(n)))
        return n.value

    def get_gradients(self):
        g = np.empty(self.gradient_size, np.float32)
        self._check(F.mp_meta_get_gradients(self.ptr, fptr(g), g.size))
        return g

    def set_gradients(self, grad):
        g = as_f32(grad).reshape(-1)
        self._check(F.mp_meta_set_gradients(self.ptr, fptr(g), g.size))

    def apply_gradients(self):
        self._check(F.mp_meta_apply_gradients(self.ptr))

    @property
    def step_count(self):
        n = ctypes.c_int64()
        self._check(F.mp_meta_step_count(self.ptr, ctypes.byref(n)))
        return n.value

    def adapt(self, task, out_prompt=None, out_model=None):
        """Runs the inner loop on task into out_prompt / out_model."""
        self._check(F.mp_meta_adapt(self.ptr, task.ptr, out_prompt.ptr if out_prompt else None,
                                    out_model.ptr if out_model else None))

    def evaluate(self, sampler, first_episode, n_episodes):
        """(mean, ci95) of query accuracy or MSE after adaptation."""
        mean, ci = ctypes.c_double(), ctypes.c_double()
        self._check(F.mp_meta_evaluate(self.ptr, sampler.ptr, int(first_episode), int(n_episodes),
                                       ctypes.byref(mean), ctypes.byref(ci)))
        return mean.value, ci.value

    def evaluate_tasks(self, tasks):
        arr, n = _task_array(tasks)
        mean, ci = ctypes.c_double(), ctypes.c_double()
        self._check(F.mp_meta_evaluate_tasks(self.ptr, arr, n, ctypes.byref(mean), ctypes.byref(ci)))
        return mean.value, ci.value

    def set_progress(self, fn=None):
        """fn(done, total) -> truthy to cancel; None removes it."""
        self._progress = PROGRESS_FN(lambda d, t, ud: 1 if fn(d, t) else 0) if fn else None
        self._check(F.mp_meta_set_progress(self.ptr, self._progress or PROGRESS_FN(), None))

    def set_eval_steps(self, steps):
        self._check(F.mp_meta_set_eval_steps(self.ptr, int(steps)))

    def inner_lr(self):
        """Meta-SGD's per-element inner rates (empty for other algorithms)."""
        n = ctypes.c_size_t()
        self._check(F.mp_meta_inner_lr_count(self.ptr, ctypes.byref(n)))
        buf = np.empty(n.value, np.float32)
        self._check(F.mp_meta_get_inner_lr(self.ptr, fptr(buf) if n.value else None, n.value))
        return buf
