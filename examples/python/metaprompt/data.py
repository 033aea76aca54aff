"""data.h: datasets, few-shot tasks and episode samplers."""
import ctypes

import numpy as np

from metaprompt._lib import (F, register, status, vp, cstr, i32, u64, size_t, c_void_pp,
                             c_float_p, c_double_p, c_int32_p, c_uint64_p, c_size_p)
from metaprompt._base import Handle, check, as_i32, as_integer, c_path, fptr, iptr, shaped, handle_ptr
from metaprompt.core import config_ptr

__all__ = ["Dataset", "Task", "Sampler", "DATA_MAX_DIMS"]

register({
    "mp_dataset_from_arrays": (status, [c_void_pp, c_float_p, size_t, i32, c_int32_p, c_float_p, i32]),
    "mp_dataset_load_idx": (status, [c_void_pp, cstr, cstr, vp]),
    "mp_dataset_load_csv": (status, [c_void_pp, cstr, vp]),
    "mp_dataset_destroy": (None, [vp]),
    "mp_dataset_error": (cstr, [vp]),
    "mp_dataset_size": (status, [vp, c_size_p]),
    "mp_dataset_dim": (status, [vp, c_int32_p]),
    "mp_dataset_target_dim": (status, [vp, c_int32_p]),
    "mp_dataset_num_classes": (status, [vp, c_int32_p]),
    "mp_dataset_class_size": (status, [vp, i32, c_size_p]),
    "mp_dataset_class_indices": (status, [vp, i32, c_size_p, size_t, c_size_p]),
    "mp_dataset_sample_shape": (status, [vp, c_int32_p, size_t, c_size_p]),
    "mp_dataset_set_sample_shape": (status, [vp, c_int32_p, size_t]),
    "mp_dataset_get": (status, [vp, size_t, c_float_p, size_t, c_int32_p]),
    "mp_dataset_get_target": (status, [vp, size_t, c_float_p, size_t]),
    "mp_dataset_select_classes": (status, [c_void_pp, vp, c_int32_p, size_t]),
    "mp_task_create_classification": (status, [c_void_pp, i32, i32, c_float_p, c_int32_p, size_t,
                                               c_float_p, c_int32_p, size_t]),
    "mp_task_create_regression": (status, [c_void_pp, i32, i32, c_float_p, c_float_p, size_t,
                                           c_float_p, c_float_p, size_t]),
    "mp_task_destroy": (None, [vp]),
    "mp_task_error": (cstr, [vp]),
    "mp_task_sizes": (status, [vp, c_size_p, c_size_p, c_int32_p, c_int32_p, c_int32_p]),
    "mp_task_get_support": (status, [vp, c_float_p, size_t, c_int32_p, size_t, c_float_p, size_t]),
    "mp_task_get_query": (status, [vp, c_float_p, size_t, c_int32_p, size_t, c_float_p, size_t]),
    "mp_task_sinusoid": (status, [c_void_pp, u64, u64, i32, i32]),
    "mp_task_sinusoid_params": (status, [vp, c_double_p, c_double_p]),
    "mp_sampler_create": (status, [c_void_pp, vp, vp]),
    "mp_sampler_create_sinusoid": (status, [c_void_pp, vp]),
    "mp_sampler_destroy": (None, [vp]),
    "mp_sampler_error": (cstr, [vp]),
    "mp_sampler_episode": (status, [vp, u64, c_void_pp]),
    "mp_sampler_episode_into": (status, [vp, u64, vp]),
    "mp_sampler_next": (status, [vp, c_void_pp]),
    "mp_sampler_get_position": (status, [vp, c_uint64_p]),
    "mp_sampler_set_position": (status, [vp, u64]),
    "mp_sampler_info": (status, [vp, c_int32_p, c_int32_p, c_int32_p, c_int32_p]),
})

# Configuration keys (data: 200-299).
CFG_DATA_SCALE = 200
CFG_DATA_CSV_HEADER = 201
CFG_DATA_CSV_LABEL_COLUMN = 202
CFG_DATA_CSV_REGRESSION = 203
CFG_DATA_WAYS = 210
CFG_DATA_SHOTS = 211
CFG_DATA_QUERIES = 212
CFG_DATA_ROTATIONS = 213
DATA_MAX_DIMS = 254
__all__ += [n for n in list(globals()) if n.startswith("CFG_DATA_")]


def _out(ctype):
    return ctype()


class Dataset(Handle):
    """Examples with class labels or regression targets (mp_dataset).
    Immutable after construction except set_sample_shape()."""

    _destroy_fn = "mp_dataset_destroy"
    _error_fn = "mp_dataset_error"

    def __init__(self, x, labels=None, targets=None):
        """From arrays (copied): x (n, dim) or (n, *sample_shape) — a shape
        with more than two dimensions becomes the sample shape; exactly one
        of labels (n ints) or targets (n, target_dim), or n values for
        target_dim 1."""
        xa = shaped(x, "Dataset: x", "n", "dim", ...)
        n = xa.shape[0]
        if n == 0:
            raise ValueError("Dataset: x needs at least one row")
        dim = xa.size // n
        lab = None if labels is None else shaped(labels, "Dataset: labels", n, conv=as_i32)
        tgt = None if targets is None else shaped(targets, "Dataset: targets", n, "target_dim",
                                                  flat=True)
        tdim = 0 if tgt is None else tgt.shape[1]
        out = ctypes.c_void_p()
        check(F.mp_dataset_from_arrays(ctypes.byref(out), fptr(xa), n, dim,
                                       iptr(lab) if lab is not None else None,
                                       fptr(tgt) if tgt is not None else None, tdim))
        Handle.__init__(self, out.value)
        if xa.ndim > 2:
            self.set_sample_shape(xa.shape[1:])

    @classmethod
    def load_idx(cls, images_path, labels_path, cfg=None):
        """Images and labels from two IDX files (plain or gzip)."""
        p, keep = config_ptr(cfg)
        return cls._create(F.mp_dataset_load_idx, c_path(images_path, "Dataset.load_idx: images_path"),
                           c_path(labels_path, "Dataset.load_idx: labels_path"), p)

    @classmethod
    def load_csv(cls, path, cfg=None):
        p, keep = config_ptr(cfg)
        return cls._create(F.mp_dataset_load_csv, c_path(path, "Dataset.load_csv: path"), p)

    def _get(self, fn, ctype, *args):
        out = ctype()
        self._check(fn(self.ptr, *args, ctypes.byref(out)))
        return out.value

    def __len__(self):
        return self._get(F.mp_dataset_size, ctypes.c_size_t)

    @property
    def dim(self):
        return self._get(F.mp_dataset_dim, ctypes.c_int32)

    @property
    def target_dim(self):
        return self._get(F.mp_dataset_target_dim, ctypes.c_int32)

    @property
    def num_classes(self):
        return self._get(F.mp_dataset_num_classes, ctypes.c_int32)

    def class_size(self, cls_id):
        return self._get(F.mp_dataset_class_size, ctypes.c_size_t, as_integer(cls_id, "Dataset.class_size: cls_id"))

    def class_indices(self, cls_id):
        """Indices of the examples of class cls_id, ascending (for get())."""
        n = ctypes.c_size_t()
        self._check(F.mp_dataset_class_indices(self.ptr, as_integer(cls_id, "Dataset.class_indices: cls_id"), None, 0, ctypes.byref(n)))
        idx = np.zeros(n.value, np.uintp)
        self._check(F.mp_dataset_class_indices(self.ptr, as_integer(cls_id, "Dataset.class_indices: cls_id"), idx.ctypes.data_as(c_size_p),
                                               idx.size, ctypes.byref(n)))
        return idx.astype(np.int64)

    @property
    def sample_shape(self):
        n = ctypes.c_size_t()
        self._check(F.mp_dataset_sample_shape(self.ptr, None, 0, ctypes.byref(n)))
        dims = np.zeros(n.value, np.int32)
        self._check(F.mp_dataset_sample_shape(self.ptr, iptr(dims), dims.size, ctypes.byref(n)))
        return tuple(int(d) for d in dims)

    def set_sample_shape(self, dims):
        d = as_i32(dims, "Dataset.set_sample_shape: dims").reshape(-1)
        self._check(F.mp_dataset_set_sample_shape(self.ptr, iptr(d), d.size))

    def get(self, i):
        """Example i: (x, label) for classification, x for regression."""
        x = np.empty(self.dim, np.float32)
        if self.target_dim:
            self._check(F.mp_dataset_get(self.ptr, as_integer(i, "Dataset.get: i"), fptr(x), x.size, None))
            return x
        lab = ctypes.c_int32()
        self._check(F.mp_dataset_get(self.ptr, as_integer(i, "Dataset.get: i"), fptr(x), x.size, ctypes.byref(lab)))
        return x, lab.value

    def get_target(self, i):
        t = np.empty(self.target_dim, np.float32)
        self._check(F.mp_dataset_get_target(self.ptr, as_integer(i, "Dataset.get_target: i"), fptr(t), t.size))
        return t

    def select_classes(self, classes):
        """A new dataset with only these classes (labels kept)."""
        c = as_i32(classes, "Dataset.select_classes: classes").reshape(-1)
        return Dataset._create(F.mp_dataset_select_classes, self.ptr, iptr(c), c.size)


class Task(Handle):
    """One few-shot task: a support set and a query set (mp_task)."""

    _destroy_fn = "mp_task_destroy"
    _error_fn = "mp_task_error"

    @classmethod
    def classification(cls, support_x, support_labels, query_x, query_labels, n_way=None):
        """x (n, dim) with one int label per row, for support and query;
        n_way None: the largest label + 1."""
        sx = shaped(support_x, "Task.classification: support_x", "n_support", "dim")
        ns, dim = sx.shape
        qx = shaped(query_x, "Task.classification: query_x", "n_query", dim)
        nq = qx.shape[0]
        sl = shaped(support_labels, "Task.classification: support_labels", ns, conv=as_i32)
        ql = shaped(query_labels, "Task.classification: query_labels", nq, conv=as_i32)
        if ns == 0 or nq == 0:
            raise ValueError("Task.classification: empty support or query set")
        if n_way is None:
            n_way = int(max(sl.max(), ql.max())) + 1
        return cls._create(F.mp_task_create_classification, dim, as_integer(n_way, "Task.classification: n_way"), fptr(sx), iptr(sl),
                           ns, fptr(qx), iptr(ql), nq)

    @classmethod
    def regression(cls, support_x, support_y, query_x, query_y):
        """Rows of x (n, dim) with targets (n, target_dim); 1-D arrays are
        read as one value per row."""
        sx = shaped(support_x, "Task.regression: support_x", "n_support", "dim", flat=True)
        ns, dim = sx.shape
        sy = shaped(support_y, "Task.regression: support_y", ns, "target_dim", flat=True)
        tdim = sy.shape[1]
        qx = shaped(query_x, "Task.regression: query_x", "n_query", dim, flat=True)
        nq = qx.shape[0]
        qy = shaped(query_y, "Task.regression: query_y", nq, tdim, flat=True)
        if ns == 0 or nq == 0:
            raise ValueError("Task.regression: empty support or query set")
        return cls._create(F.mp_task_create_regression, dim, tdim, fptr(sx), fptr(sy), ns,
                           fptr(qx), fptr(qy), nq)

    @classmethod
    def sinusoid(cls, seed, index, k_support=10, k_query=10):
        """Sinusoid task number index of the MAML family (a pure function
        of seed and index)."""
        return cls._create(F.mp_task_sinusoid, as_integer(seed, "Task.sinusoid: seed"),
                           as_integer(index, "Task.sinusoid: index"), as_integer(k_support, "Task.sinusoid: k_support"),
                           as_integer(k_query, "Task.sinusoid: k_query"))

    def sizes(self):
        """(n_support, n_query, dim, n_way, target_dim)."""
        ns, nq = ctypes.c_size_t(), ctypes.c_size_t()
        d, w, t = ctypes.c_int32(), ctypes.c_int32(), ctypes.c_int32()
        self._check(F.mp_task_sizes(self.ptr, ctypes.byref(ns), ctypes.byref(nq), ctypes.byref(d),
                                    ctypes.byref(w), ctypes.byref(t)))
        return ns.value, nq.value, d.value, w.value, t.value

    def _set(self, fn, n, dim, n_way, tdim):
        x = np.empty((n, dim), np.float32)
        if tdim:
            y = np.empty((n, tdim), np.float32)
            self._check(fn(self.ptr, fptr(x), x.size, None, 0, fptr(y), y.size))
        else:
            y = np.empty(n, np.int32)
            self._check(fn(self.ptr, fptr(x), x.size, iptr(y), y.size, None, 0))
        return x, y

    def support(self):
        """(x (n, dim), labels (n,) int32 or targets (n, target_dim))."""
        ns, nq, d, w, t = self.sizes()
        return self._set(F.mp_task_get_support, ns, d, w, t)

    def query(self):
        ns, nq, d, w, t = self.sizes()
        return self._set(F.mp_task_get_query, nq, d, w, t)

    def sinusoid_params(self):
        """(amplitude, phase) of a sinusoid task."""
        a, p = ctypes.c_double(), ctypes.c_double()
        self._check(F.mp_task_sinusoid_params(self.ptr, ctypes.byref(a), ctypes.byref(p)))
        return a.value, p.value


class Sampler(Handle):
    """Draws N-way K-shot Q-query episodes (mp_sampler). Episode i depends
    only on (seed, i). Keeps its dataset alive."""

    _destroy_fn = "mp_sampler_destroy"
    _error_fn = "mp_sampler_error"

    def __init__(self, dataset, cfg=None):
        """Over a classification dataset; cfg keys CFG_DATA_WAYS/SHOTS/
        QUERIES/ROTATIONS and CFG_SEED."""
        dp = handle_ptr(dataset, Dataset, "Sampler: dataset")
        p, keep = config_ptr(cfg)
        out = ctypes.c_void_p()
        check(F.mp_sampler_create(ctypes.byref(out), dp, p))
        Handle.__init__(self, out.value, owners=(dataset,))

    @classmethod
    def sinusoid(cls, cfg=None):
        """Sinusoid regression tasks (CFG_DATA_SHOTS support and
        CFG_DATA_QUERIES query points)."""
        p, keep = config_ptr(cfg)
        return cls._create(F.mp_sampler_create_sinusoid, p)

    def episode(self, index):
        """Episode number index as a new Task."""
        out = ctypes.c_void_p()
        self._check(F.mp_sampler_episode(self.ptr, as_integer(index, "Sampler.episode: index"), ctypes.byref(out)))
        return Task._wrap(out.value)

    def episode_into(self, index, task):
        """Writes episode index into an existing task (no allocation when
        it has the same sizes)."""
        tp = handle_ptr(task, Task, "Sampler.episode_into: task")
        self._check(F.mp_sampler_episode_into(self.ptr, as_integer(index, "Sampler.episode_into: index"), tp))
        return task

    def next(self):
        """The episode at the current position, then advances it."""
        out = ctypes.c_void_p()
        self._check(F.mp_sampler_next(self.ptr, ctypes.byref(out)))
        return Task._wrap(out.value)

    @property
    def position(self):
        out = ctypes.c_uint64()
        self._check(F.mp_sampler_get_position(self.ptr, ctypes.byref(out)))
        return out.value

    @position.setter
    def position(self, value):
        self._check(F.mp_sampler_set_position(self.ptr, as_integer(value, "Sampler.position")))

    def info(self):
        """(ways, shots, queries, dim)."""
        v = [ctypes.c_int32() for _ in range(4)]
        self._check(F.mp_sampler_info(self.ptr, *(ctypes.byref(x) for x in v)))
        return tuple(x.value for x in v)
