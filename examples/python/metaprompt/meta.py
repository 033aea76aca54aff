"""meta.h: the meta-optimizers (MAML, FOMAML, Reptile, Meta-SGD)."""
import ctypes

from metaprompt._lib import (F, register, status, vp, cstr, i32, i64, u64, f64, size_t, c_void_pp,
                             c_float_p, c_double_p, c_int64_p, c_size_p, PROGRESS_FN)
from metaprompt._base import (Handle, MetapromptError, as_integer, check, as_f32, fptr, out_f32, handle_ptr,
                              handle_array)
from metaprompt.core import KeyedSettings, config_ptr
from metaprompt.data import Sampler, Task
from metaprompt.model import Model, Prompt

__all__ = ["Meta"]

register({
    "mp_meta_create": (status, [c_void_pp, vp, vp, vp]),
    "mp_meta_destroy": (None, [vp]),
    "mp_meta_error": (cstr, [vp]),
    "mp_meta_step": (status, [vp, c_void_pp, size_t, c_double_p, size_t]),
    "mp_meta_compute_gradients": (status, [vp, c_void_pp, size_t, c_double_p, size_t]),
    "mp_meta_gradient_size": (status, [vp, c_size_p]),
    "mp_meta_get_gradients": (status, [vp, c_float_p, size_t]),
    "mp_meta_set_gradients": (status, [vp, c_float_p, size_t]),
    "mp_meta_apply_gradients": (status, [vp]),
    "mp_meta_step_count": (status, [vp, c_int64_p]),
    "mp_meta_adapt": (status, [vp, vp, vp, vp]),
    "mp_meta_evaluate": (status, [vp, vp, u64, size_t, c_double_p, c_double_p]),
    "mp_meta_evaluate_tasks": (status, [vp, c_void_pp, size_t, c_double_p, c_double_p]),
    "mp_meta_set_progress": (status, [vp, PROGRESS_FN, vp]),
    "mp_meta_set_eval_steps": (status, [vp, i32]),
    "mp_meta_inner_lr_count": (status, [vp, c_size_p]),
    "mp_meta_get_inner_lr": (status, [vp, c_float_p, size_t]),
    "mp_meta_get_int": (status, [vp, i32, c_int64_p]),
    "mp_meta_get_float": (status, [vp, i32, c_double_p]),
    "mp_meta_set_int": (status, [vp, i32, i64]),
    "mp_meta_set_float": (status, [vp, i32, f64]),
})

# Configuration keys (meta: 300-399).
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
__all__ += [n for n in list(globals())
            if n.startswith(("CFG_META_", "META_", "SCOPE_", "LEARN_", "OPT_"))]

STAT_NAMES = ("loss_before", "loss_after", "acc_before", "acc_after")


class Meta(KeyedSettings, Handle):
    """A meta-learner over a model and its prompt (mp_meta). The model and
    prompt are the meta-parameters, updated in place; the Meta keeps both
    alive. prompt may be None for a model without prompt (P == 0)."""

    _destroy_fn = "mp_meta_destroy"
    _error_fn = "mp_meta_error"
    _get_int_fn, _get_float_fn = "mp_meta_get_int", "mp_meta_get_float"
    _set_int_fn, _set_float_fn = "mp_meta_set_int", "mp_meta_set_float"

    def __init__(self, model, prompt=None, cfg=None):
        mp = handle_ptr(model, Model, "Meta: model")
        pp = handle_ptr(prompt, Prompt, "Meta: prompt", optional=True)
        p, keep = config_ptr(cfg)
        out = ctypes.c_void_p()
        check(F.mp_meta_create(ctypes.byref(out), mp, pp, p))
        Handle.__init__(self, out.value, owners=(model, prompt))
        self.model, self.prompt = model, prompt
        self._progress = None

    def close(self):
        Handle.close(self)
        self._progress = None  # only after C stopped using the callback

    def _batch(self, fn, name, tasks):
        arr, n = handle_array(tasks, Task, name + ": tasks")
        stats = (ctypes.c_double * META_NUM_STATS)()
        self._check(fn(self.ptr, arr, n, stats, META_NUM_STATS))
        return dict(zip(STAT_NAMES, stats))

    def step(self, tasks):
        """One meta-update on a meta-batch; returns the mean query loss and
        accuracy (NaN for regression) before and after adaptation."""
        return self._batch(F.mp_meta_step, "Meta.step", tasks)

    def compute_gradients(self, tasks):
        """The meta-gradient of a meta-batch, kept in the meta (see
        get_gradients / set_gradients / apply_gradients); returns stats."""
        return self._batch(F.mp_meta_compute_gradients, "Meta.compute_gradients", tasks)

    @property
    def gradient_size(self):
        out = ctypes.c_size_t()
        self._check(F.mp_meta_gradient_size(self.ptr, ctypes.byref(out)))
        return out.value

    def get_gradients(self, out=None):
        buf = out_f32((self.gradient_size,), out)
        self._check(F.mp_meta_get_gradients(self.ptr, fptr(buf), buf.size))
        return buf

    def set_gradients(self, grad):
        """Replaces the gradient (e.g. after an all-reduce across processes)."""
        g = as_f32(grad)
        self._check(F.mp_meta_set_gradients(self.ptr, fptr(g), g.size))

    def apply_gradients(self):
        self._check(F.mp_meta_apply_gradients(self.ptr))

    @property
    def step_count(self):
        out = ctypes.c_int64()
        self._check(F.mp_meta_step_count(self.ptr, ctypes.byref(out)))
        return out.value

    def adapt(self, task, out_prompt=None, out_model=None):
        """Adapts to one task without touching the meta-parameters; returns
        the adapted prompt (a new Prompt unless out_prompt is given; None
        for a model without prompt). With out_model (e.g. model.clone()),
        all adapted parameters are written there too."""
        tp = handle_ptr(task, Task, "Meta.adapt: task")
        handle_ptr(out_prompt, Prompt, "Meta.adapt: out_prompt", optional=True)
        mp = handle_ptr(out_model, Model, "Meta.adapt: out_model", optional=True)
        if out_prompt is None and self.prompt is not None:
            out_prompt = Prompt(self.model)
        self._check(F.mp_meta_adapt(self.ptr, tp, None if out_prompt is None else out_prompt.ptr, mp))
        return out_prompt

    def evaluate(self, sampler, first_episode, n_episodes):
        """(mean, ci95) of query accuracy (classifier) or MSE (regressor)
        after adaptation over episodes first .. first+n-1 of sampler."""
        mean, ci = ctypes.c_double(), ctypes.c_double()
        sp = handle_ptr(sampler, Sampler, "Meta.evaluate: sampler")
        self._check(F.mp_meta_evaluate(self.ptr, sp, as_integer(first_episode, "Meta.evaluate: first_episode"),
                                       as_integer(n_episodes, "Meta.evaluate: n_episodes"), ctypes.byref(mean),
                                       ctypes.byref(ci)))
        return mean.value, ci.value

    def evaluate_tasks(self, tasks):
        arr, n = handle_array(tasks, Task, "Meta.evaluate_tasks: tasks")
        mean, ci = ctypes.c_double(), ctypes.c_double()
        self._check(F.mp_meta_evaluate_tasks(self.ptr, arr, n, ctypes.byref(mean),
                                             ctypes.byref(ci)))
        return mean.value, ci.value

    def set_progress(self, fn):
        """fn(done, total) -> truthy to cancel (MetapromptError
        ERR_CANCELLED), called on the calling thread during evaluate*.
        None removes it. An exception in fn cancels too, and the
        MetapromptError then carries it as __cause__."""
        raised = []  # the closure holds this list, not self (no reference cycle)
        if fn is None:
            cb = ctypes.cast(None, PROGRESS_FN)
        else:
            def trampoline(done, total, _user):
                try:
                    return 1 if fn(done, total) else 0
                except Exception as e:
                    raised.append(e)
                    return 1
            cb = PROGRESS_FN(trampoline)
        self._check(F.mp_meta_set_progress(self.ptr, cb, None))
        self._progress = cb if fn is not None else None
        self._progress_raised = raised

    def _check(self, st):
        raised = self.__dict__.get("_progress_raised")
        cause = raised[0] if raised else None
        if raised:
            del raised[:]
        try:
            check(st, self)
        except MetapromptError as e:
            if cause is not None:
                raise e from cause
            raise

    def set_eval_steps(self, steps):
        """Inner steps used by adapt and evaluate; -1: follow meta.inner_steps."""
        self._check(F.mp_meta_set_eval_steps(self.ptr, as_integer(steps, "Meta.set_eval_steps: steps")))

    # ---- hyper-parameters after creation (mp_meta_get_*/set_*): get, set,
    # get_int, ... from KeyedSettings: CFG_META_* or CFG_THREADS, or names
    # such as "meta.outer_lr"; set changes what does not shape the meta's
    # state between steps (outer learning-rate schedules, inner steps,
    # MAML/FOMAML/Reptile switches; see mp_meta_set_int/float in meta.h).

    @property
    def inner_lr_count(self):
        out = ctypes.c_size_t()
        self._check(F.mp_meta_inner_lr_count(self.ptr, ctypes.byref(out)))
        return out.value

    def get_inner_lr(self, out=None):
        """Meta-SGD's learned per-element inner rates."""
        buf = out_f32((self.inner_lr_count,), out)
        self._check(F.mp_meta_get_inner_lr(self.ptr, fptr(buf), buf.size))
        return buf
