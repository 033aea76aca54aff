"""model.h: models, soft prompts and checkpoints."""
import ctypes

from metaprompt._lib import (F, register, status, vp, cstr, i32, u64, f64, size_t, c_void_pp,
                             c_float_p, c_int32_p, c_int64_p, c_size_p)
from metaprompt._base import Handle, check, as_f32, as_i32, c_path, fptr, iptr, out_f32, shaped, handle_ptr
from metaprompt.core import config_ptr

__all__ = ["Model", "Prompt", "checkpoint_save", "checkpoint_load",
           "MODEL_MLP", "MODEL_TRANSFORMER", "MODEL_CONV", "TASK_AUTO", "TASK_CLASSIFICATION",
           "TASK_REGRESSION", "ACT_RELU", "ACT_TANH", "ACT_GELU", "ACT_SIGMOID",
           "PROMPT_INPUT_CHANNELS", "PROMPT_HEAD_FEATURES", "PROMPT_INIT_ZEROS",
           "PROMPT_INIT_NORMAL", "PROMPT_INIT_UNIFORM", "INIT_HE", "INIT_TORCH"]

register({
    "mp_model_create": (status, [c_void_pp, vp]),
    "mp_model_destroy": (None, [vp]),
    "mp_model_error": (cstr, [vp]),
    "mp_model_clone": (status, [c_void_pp, vp]),
    "mp_model_get_int": (status, [vp, i32, c_int64_p]),
    "mp_model_num_params": (status, [vp, c_size_p]),
    "mp_model_get_params": (status, [vp, c_float_p, size_t]),
    "mp_model_set_params": (status, [vp, c_float_p, size_t]),
    "mp_model_prompt_shape": (status, [vp, c_int32_p, c_int32_p]),
    "mp_model_predict": (status, [vp, vp, c_float_p, size_t, size_t, c_float_p, size_t]),
    "mp_model_loss": (status, [vp, vp, c_float_p, size_t, size_t, c_int32_p, c_float_p, c_float_p]),
    "mp_prompt_create": (status, [c_void_pp, vp]),
    "mp_prompt_destroy": (None, [vp]),
    "mp_prompt_error": (cstr, [vp]),
    "mp_prompt_shape": (status, [vp, c_int32_p, c_int32_p]),
    "mp_prompt_init": (status, [vp, i32, f64, u64]),
    "mp_prompt_init_from_data": (status, [vp, vp, c_float_p, size_t, size_t]),
    "mp_prompt_get": (status, [vp, c_float_p, size_t]),
    "mp_prompt_set": (status, [vp, c_float_p, size_t]),
    "mp_prompt_copy": (status, [vp, vp]),
    "mp_checkpoint_save": (status, [cstr, vp, vp, vp]),
    "mp_checkpoint_load": (status, [cstr, vp, vp, vp]),
    "mp_checkpoint_save_with_sampler": (status, [cstr, vp, vp, vp, vp]),
    "mp_checkpoint_load_with_sampler": (status, [cstr, vp, vp, vp, vp]),
    "mp_model_create_from_checkpoint": (status, [c_void_pp, cstr]),
})

MODEL_MLP, MODEL_TRANSFORMER, MODEL_CONV = 1, 2, 3
TASK_AUTO, TASK_CLASSIFICATION, TASK_REGRESSION = 0, 1, 2
ACT_RELU, ACT_TANH, ACT_GELU, ACT_SIGMOID = 1, 2, 3, 4
PROMPT_INPUT_CHANNELS, PROMPT_HEAD_FEATURES = 1, 2
PROMPT_INIT_ZEROS, PROMPT_INIT_NORMAL, PROMPT_INIT_UNIFORM = 0, 1, 2
INIT_HE, INIT_TORCH = 0, 1

# Configuration keys (model: 100-199).
CFG_MODEL_KIND = 100
CFG_MODEL_INPUT_DIM = 101
CFG_MODEL_OUTPUT_DIM = 102
CFG_MODEL_TASK = 103
CFG_MODEL_PROMPT_LEN = 104
CFG_MODEL_PROMPT_DIM = 105
CFG_MODEL_HIDDEN_LAYERS = 106
CFG_MODEL_HIDDEN_WIDTH = 107
CFG_MODEL_ACTIVATION = 108
CFG_MODEL_IMAGE_HEIGHT = 109
CFG_MODEL_IMAGE_WIDTH = 110
CFG_MODEL_IMAGE_CHANNELS = 111
CFG_MODEL_PATCH = 112
CFG_MODEL_VOCAB = 113
CFG_MODEL_SEQ_LEN = 114
CFG_MODEL_D_MODEL = 115
CFG_MODEL_LAYERS = 116
CFG_MODEL_HEADS = 117
CFG_MODEL_MLP_DIM = 118
CFG_MODEL_CHANNELS = 119
CFG_MODEL_CONV_BLOCKS = 120
CFG_MODEL_PROMPT_MODE = 121
CFG_MODEL_INIT = 122
__all__ += [n for n in list(globals()) if n.startswith("CFG_MODEL_")]


def _rows(x, model, what):
    """x checked to be (n, model.input_dim), as C-contiguous float32; returns
    (array, n)."""
    handle_ptr(model, Model, what + ": model")
    arr = shaped(x, what + ": x", "n", model.input_dim)
    return arr, arr.shape[0]


class Model(Handle):
    """A backbone + head with a prompt slot (mp_model). Model(cfg) with a
    Config, a dict {key: value} or None (the sinusoid MLP defaults)."""

    _destroy_fn = "mp_model_destroy"
    _error_fn = "mp_model_error"

    def __init__(self, cfg=None):
        p, keep = config_ptr(cfg)
        out = ctypes.c_void_p()
        check(F.mp_model_create(ctypes.byref(out), p))
        Handle.__init__(self, out.value)
        del keep

    @classmethod
    def from_checkpoint(cls, path):
        """A model with the configuration and parameters stored in path."""
        return cls._create(F.mp_model_create_from_checkpoint, c_path(path, "Model.from_checkpoint: path"))

    def clone(self):
        return Model._create(F.mp_model_clone, self.ptr)

    def get_int(self, key):
        """Resolved value of a MP_CFG_MODEL_* key (or CFG_SEED)."""
        out = ctypes.c_int64()
        self._check(F.mp_model_get_int(self.ptr, int(key), ctypes.byref(out)))
        return out.value

    @property
    def input_dim(self):
        return self.get_int(CFG_MODEL_INPUT_DIM)

    @property
    def output_dim(self):
        return self.get_int(CFG_MODEL_OUTPUT_DIM)

    @property
    def num_params(self):
        out = ctypes.c_size_t()
        self._check(F.mp_model_num_params(self.ptr, ctypes.byref(out)))
        return out.value

    def get_params(self, out=None):
        """All parameters as one float32 vector (layout: docs/MODELS.md)."""
        buf = out_f32((self.num_params,), out)
        self._check(F.mp_model_get_params(self.ptr, fptr(buf), buf.size))
        return buf

    def set_params(self, values):
        arr = as_f32(values)
        self._check(F.mp_model_set_params(self.ptr, fptr(arr), arr.size))

    @property
    def prompt_shape(self):
        r, c = ctypes.c_int32(), ctypes.c_int32()
        self._check(F.mp_model_prompt_shape(self.ptr, ctypes.byref(r), ctypes.byref(c)))
        return r.value, c.value

    def predict(self, x, prompt=None, out=None):
        """Outputs (n, output_dim) for rows of x (n x input_dim); prompt None
        means an all-zero prompt."""
        pp = handle_ptr(prompt, Prompt, "Model.predict: prompt", optional=True)
        arr, n = _rows(x, self, "Model.predict")
        od = self.output_dim
        buf = out_f32((n, od), out)
        self._check(F.mp_model_predict(self.ptr, pp, fptr(arr), n, arr.size,
                                       fptr(buf), buf.size))
        return buf if out is not None else buf.reshape(n, od)

    def loss(self, x, labels=None, targets=None, prompt=None):
        """Mean cross-entropy against int labels (classifier: n,) or mean
        squared error against targets (regressor: n x output_dim, or n
        values when output_dim is 1) for the n rows of x (n x input_dim)."""
        pp = handle_ptr(prompt, Prompt, "Model.loss: prompt", optional=True)
        arr, n = _rows(x, self, "Model.loss")
        lab = None if labels is None else shaped(labels, "Model.loss: labels", n, conv=as_i32)
        tgt = None if targets is None else shaped(targets, "Model.loss: targets", n,
                                                  self.output_dim, flat=True)
        out = ctypes.c_float()
        self._check(F.mp_model_loss(self.ptr, pp, fptr(arr), n, arr.size,
                                    iptr(lab) if lab is not None else None,
                                    fptr(tgt) if tgt is not None else None, ctypes.byref(out)))
        return out.value


class Prompt(Handle):
    """A P x d soft prompt shaped for a model (mp_prompt); starts at zero.
    It keeps no reference to the model."""

    _destroy_fn = "mp_prompt_destroy"
    _error_fn = "mp_prompt_error"

    def __init__(self, model):
        mp = handle_ptr(model, Model, "Prompt: model")
        out = ctypes.c_void_p()
        check(F.mp_prompt_create(ctypes.byref(out), mp))
        Handle.__init__(self, out.value)

    @property
    def shape(self):
        r, c = ctypes.c_int32(), ctypes.c_int32()
        self._check(F.mp_prompt_shape(self.ptr, ctypes.byref(r), ctypes.byref(c)))
        return r.value, c.value

    def init(self, method=PROMPT_INIT_NORMAL, scale=0.02, seed=0):
        self._check(F.mp_prompt_init(self.ptr, int(method), float(scale), int(seed)))
        return self

    def init_from_data(self, model, x):
        """Initialises from example rows of model's input (like PEFT's
        initialisation from text); x is n x model.input_dim."""
        arr, n = _rows(x, model, "Prompt.init_from_data")
        self._check(F.mp_prompt_init_from_data(self.ptr, model.ptr, fptr(arr), n, arr.size))
        return self

    def get(self, out=None):
        shape = self.shape
        buf = out_f32(shape, out)
        self._check(F.mp_prompt_get(self.ptr, fptr(buf), buf.size))
        return buf if out is not None else buf.reshape(shape)

    def set(self, values):
        """Replaces the values: an array of the prompt's shape (P, d), or a
        1-D array of its P*d values in row-major order. Any other shape
        (e.g. (d, P) for a P x d prompt, although it holds as many values)
        is a ValueError naming the expected and the received shape."""
        shape = self.shape
        arr = as_f32(values)
        if arr.shape != shape and arr.shape != (shape[0] * shape[1],):
            raise ValueError("Prompt.set: values must have shape (%d, %d) or (%d,), got %s"
                             % (shape[0], shape[1], shape[0] * shape[1], arr.shape))
        self._check(F.mp_prompt_set(self.ptr, fptr(arr), arr.size))
        return self

    def copy_from(self, src):
        self._check(F.mp_prompt_copy(self.ptr, handle_ptr(src, Prompt, "Prompt.copy_from: src")))
        return self


def _checkpoint_args(fn, path, model, prompt, meta, sampler):
    """The C arguments of a checkpoint call; TypeError naming a handle
    argument of the wrong class."""
    from metaprompt.data import Sampler  # these modules import this one
    from metaprompt.meta import Meta
    return (c_path(path, fn + ": path"), handle_ptr(model, Model, fn + ": model"),
            handle_ptr(prompt, Prompt, fn + ": prompt", optional=True),
            handle_ptr(meta, Meta, fn + ": meta", optional=True),
            handle_ptr(sampler, Sampler, fn + ": sampler", optional=True))


def checkpoint_save(path, model, prompt=None, meta=None, sampler=None):
    """Saves model, optional prompt, meta-optimizer state and the position
    (and identity) of an episode sampler, atomically."""
    *args, sp = _checkpoint_args("checkpoint_save", path, model, prompt, meta, sampler)
    if sampler is None:
        check(F.mp_checkpoint_save(*args))
    else:
        check(F.mp_checkpoint_save_with_sampler(*args, sp))


def checkpoint_load(path, model, prompt=None, meta=None, sampler=None):
    """Loads a checkpoint into existing handles; with a sampler, restores its
    position (the file must hold a sampler configured the same way).
    Nothing changes on failure."""
    *args, sp = _checkpoint_args("checkpoint_load", path, model, prompt, meta, sampler)
    if sampler is None:
        check(F.mp_checkpoint_load(*args), model)
    else:
        check(F.mp_checkpoint_load_with_sampler(*args, sp), model)
