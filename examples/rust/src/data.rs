//! data.h: datasets, few-shot tasks and episode samplers.
use crate::{c_string, cfg_ptr, check, check_len, rows_of, status, sys, text, to_usize, Config, Error, Result};
use std::marker::PhantomData;
use std::ptr;

pub const CFG_DATA_SCALE: i32 = 200;
pub const CFG_DATA_CSV_HEADER: i32 = 201;
pub const CFG_DATA_CSV_LABEL_COLUMN: i32 = 202;
pub const CFG_DATA_CSV_REGRESSION: i32 = 203;
pub const CFG_DATA_WAYS: i32 = 210;
pub const CFG_DATA_SHOTS: i32 = 211;
pub const CFG_DATA_QUERIES: i32 = 212;
pub const CFG_DATA_ROTATIONS: i32 = 213;
pub const DATA_MAX_DIMS: i32 = 254;

/// Examples with class labels or regression targets (mp_dataset).
pub struct Dataset {
    ptr: *mut sys::mp_dataset,
}

// SAFETY: data.h: a dataset is immutable after construction and every
// function taking a const dataset is thread-safe; the one mutator
// (set_sample_shape) takes &mut self.
unsafe impl Send for Dataset {}
unsafe impl Sync for Dataset {}

fn out_or_err<T>(st: i32, handle_msg: String, v: T) -> Result<T> {
    if st == status::OK {
        Ok(v)
    } else {
        check(st, Some(handle_msg)).map(|_| v)
    }
}

impl Dataset {
    /// From arrays (copied): x holds n rows of dim floats with n =
    /// labels.len() class ids (classification). A slice length that does not
    /// match (x.len() != labels.len() * dim) is ERR_SHAPE_MISMATCH; other
    /// argument errors (dim < 1, no rows) come from the library.
    pub fn from_labels(x: &[f32], dim: i32, labels: &[i32]) -> Result<Dataset> {
        const F: &str = "Dataset::from_labels";
        if dim >= 1 {
            check_len(F, "x", x.len(), labels.len(), dim as usize,
                      &format!("{} labels x dim {}", labels.len(), dim))?;
        } // dim < 1: the library rejects it before reading x
        let mut p = ptr::null_mut();
        check(unsafe {
            sys::mp_dataset_from_arrays(&mut p, x.as_ptr(), labels.len(), dim, labels.as_ptr(),
                                        ptr::null(), 0)
        }, None)?;
        Ok(Dataset { ptr: p })
    }
    /// Regression: n = targets.len() / target_dim rows; targets.len() must be
    /// a multiple of target_dim and x.len() == n * dim (else
    /// ERR_SHAPE_MISMATCH).
    pub fn from_targets(x: &[f32], dim: i32, targets: &[f32], target_dim: i32) -> Result<Dataset> {
        const F: &str = "Dataset::from_targets";
        // target_dim < 1 or dim < 1: n or dim is rejected by the library
        // before it reads anything.
        let mut n = 0;
        if target_dim >= 1 {
            n = rows_of(F, "targets", targets.len(), target_dim as usize,
                        &format!("rows of target_dim {}", target_dim))?;
            if dim >= 1 {
                check_len(F, "x", x.len(), n, dim as usize,
                          &format!("{} target rows x dim {}", n, dim))?;
            }
        }
        let mut p = ptr::null_mut();
        check(unsafe {
            sys::mp_dataset_from_arrays(&mut p, x.as_ptr(), n, dim, ptr::null(), targets.as_ptr(),
                                        target_dim)
        }, None)?;
        Ok(Dataset { ptr: p })
    }
    /// Images and labels from two IDX files (plain or gzip).
    pub fn load_idx(images: &str, labels: &str, cfg: Option<&Config>) -> Result<Dataset> {
        let (i, l) = (c_string("Dataset::load_idx", images)?, c_string("Dataset::load_idx", labels)?);
        let mut p = ptr::null_mut();
        check(unsafe { sys::mp_dataset_load_idx(&mut p, i.as_ptr(), l.as_ptr(), cfg_ptr(cfg)) }, None)?;
        Ok(Dataset { ptr: p })
    }
    pub fn load_csv(path: &str, cfg: Option<&Config>) -> Result<Dataset> {
        let c = c_string("Dataset::load_csv", path)?;
        let mut p = ptr::null_mut();
        check(unsafe { sys::mp_dataset_load_csv(&mut p, c.as_ptr(), cfg_ptr(cfg)) }, None)?;
        Ok(Dataset { ptr: p })
    }
    pub fn error(&self) -> String {
        text(unsafe { sys::mp_dataset_error(self.ptr) })
    }
    pub fn len(&self) -> Result<usize> {
        let mut v = 0usize;
        let st = unsafe { sys::mp_dataset_size(self.ptr, &mut v) };
        out_or_err(st, self.error(), v)
    }
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
    pub fn dim(&self) -> Result<i32> {
        let mut v = 0i32;
        let st = unsafe { sys::mp_dataset_dim(self.ptr, &mut v) };
        out_or_err(st, self.error(), v)
    }
    pub fn target_dim(&self) -> Result<i32> {
        let mut v = 0i32;
        let st = unsafe { sys::mp_dataset_target_dim(self.ptr, &mut v) };
        out_or_err(st, self.error(), v)
    }
    pub fn num_classes(&self) -> Result<i32> {
        let mut v = 0i32;
        let st = unsafe { sys::mp_dataset_num_classes(self.ptr, &mut v) };
        out_or_err(st, self.error(), v)
    }
    pub fn class_size(&self, cls: i32) -> Result<usize> {
        let mut v = 0usize;
        let st = unsafe { sys::mp_dataset_class_size(self.ptr, cls, &mut v) };
        out_or_err(st, self.error(), v)
    }
    /// Indices of the examples of class cls, ascending (for `get`).
    pub fn class_indices(&self, cls: i32) -> Result<Vec<usize>> {
        let mut n = 0usize;
        let st = unsafe { sys::mp_dataset_class_indices(self.ptr, cls, ptr::null_mut(), 0, &mut n) };
        out_or_err(st, self.error(), ())?;
        let mut idx = vec![0usize; n];
        let st = unsafe { sys::mp_dataset_class_indices(self.ptr, cls, idx.as_mut_ptr(), idx.len(), &mut n) };
        out_or_err(st, self.error(), idx)
    }
    pub fn sample_shape(&self) -> Result<Vec<i32>> {
        let mut n = 0usize;
        let st = unsafe { sys::mp_dataset_sample_shape(self.ptr, ptr::null_mut(), 0, &mut n) };
        out_or_err(st, self.error(), ())?;
        let mut dims = vec![0i32; n];
        let st = unsafe { sys::mp_dataset_sample_shape(self.ptr, dims.as_mut_ptr(), dims.len(), &mut n) };
        out_or_err(st, self.error(), dims)
    }
    pub fn set_sample_shape(&mut self, dims: &[i32]) -> Result<()> {
        let st = unsafe { sys::mp_dataset_set_sample_shape(self.ptr, dims.as_ptr(), dims.len()) };
        out_or_err(st, self.error(), ())
    }
    /// Example i and its label (classification datasets).
    pub fn get(&self, i: usize) -> Result<(Vec<f32>, i32)> {
        let mut x = vec![0f32; to_usize("Dataset::get", "dim", self.dim()?)?];
        let mut label = 0i32;
        let st = unsafe { sys::mp_dataset_get(self.ptr, i, x.as_mut_ptr(), x.len(), &mut label) };
        out_or_err(st, self.error(), (x, label))
    }
    /// Example i and its target (regression datasets).
    pub fn get_regression(&self, i: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut x = vec![0f32; to_usize("Dataset::get_regression", "dim", self.dim()?)?];
        let st = unsafe { sys::mp_dataset_get(self.ptr, i, x.as_mut_ptr(), x.len(), ptr::null_mut()) };
        out_or_err(st, self.error(), ())?;
        let mut t = vec![0f32; to_usize("Dataset::get_regression", "target_dim", self.target_dim()?)?];
        let st = unsafe { sys::mp_dataset_get_target(self.ptr, i, t.as_mut_ptr(), t.len()) };
        out_or_err(st, self.error(), (x, t))
    }
    /// A new dataset with only these classes (labels kept).
    pub fn select_classes(&self, classes: &[i32]) -> Result<Dataset> {
        let mut p = ptr::null_mut();
        check(unsafe { sys::mp_dataset_select_classes(&mut p, self.ptr, classes.as_ptr(), classes.len()) }, None)?;
        Ok(Dataset { ptr: p })
    }
}

impl Drop for Dataset {
    fn drop(&mut self) {
        unsafe { sys::mp_dataset_destroy(self.ptr) }
    }
}

/// Labels (classification) or targets (regression) of a support or query set.
#[derive(Clone, Debug, PartialEq)]
pub enum Outputs {
    Labels(Vec<i32>),
    Targets(Vec<f32>),
}

/// Sizes of a task (mp_task_sizes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskSizes {
    pub n_support: usize,
    pub n_query: usize,
    pub dim: i32,
    pub n_way: i32,
    pub target_dim: i32,
}

/// One few-shot task: a support set and a query set (mp_task).
pub struct Task {
    pub(crate) ptr: *mut sys::mp_task,
}

// SAFETY: distinct tasks may be used from distinct threads.
unsafe impl Send for Task {}

impl Task {
    /// n_support = support_labels.len() and n_query = query_labels.len()
    /// rows; support_x and query_x must hold that many rows of dim values
    /// (else ERR_SHAPE_MISMATCH naming the argument).
    pub fn classification(dim: i32, n_way: i32, support_x: &[f32], support_labels: &[i32],
                          query_x: &[f32], query_labels: &[i32]) -> Result<Task> {
        const F: &str = "Task::classification";
        if dim >= 1 { // dim < 1: rejected by the library before any read
            check_len(F, "support_x", support_x.len(), support_labels.len(), dim as usize,
                      &format!("{} support_labels x dim {}", support_labels.len(), dim))?;
            check_len(F, "query_x", query_x.len(), query_labels.len(), dim as usize,
                      &format!("{} query_labels x dim {}", query_labels.len(), dim))?;
        }
        let mut p = ptr::null_mut();
        check(unsafe {
            sys::mp_task_create_classification(&mut p, dim, n_way, support_x.as_ptr(), support_labels.as_ptr(),
                                               support_labels.len(), query_x.as_ptr(),
                                               query_labels.as_ptr(), query_labels.len())
        }, None)?;
        Ok(Task { ptr: p })
    }
    /// n rows of dim features with target_dim targets each, per set: the
    /// rows are counted from sy and qy (whose lengths must be multiples of
    /// target_dim), sx and qx must hold as many rows of dim values (else
    /// ERR_SHAPE_MISMATCH naming the argument).
    pub fn regression(dim: i32, target_dim: i32, sx: &[f32], sy: &[f32], qx: &[f32], qy: &[f32]) -> Result<Task> {
        const F: &str = "Task::regression";
        // target_dim < 1 or dim < 1: rejected by the library before any read.
        let (mut ns, mut nq) = (sy.len(), qy.len());
        if target_dim >= 1 {
            let td = target_dim as usize;
            let how = format!("rows of target_dim {}", target_dim);
            ns = rows_of(F, "sy", sy.len(), td, &how)?;
            nq = rows_of(F, "qy", qy.len(), td, &how)?;
            if dim >= 1 {
                check_len(F, "sx", sx.len(), ns, dim as usize, &format!("{} sy rows x dim {}", ns, dim))?;
                check_len(F, "qx", qx.len(), nq, dim as usize, &format!("{} qy rows x dim {}", nq, dim))?;
            }
        }
        let mut p = ptr::null_mut();
        check(unsafe {
            sys::mp_task_create_regression(&mut p, dim, target_dim, sx.as_ptr(), sy.as_ptr(), ns,
                                           qx.as_ptr(), qy.as_ptr(), nq)
        }, None)?;
        Ok(Task { ptr: p })
    }
    /// Sinusoid task number index of the MAML family (a pure function of seed, index).
    pub fn sinusoid(seed: u64, index: u64, k_support: i32, k_query: i32) -> Result<Task> {
        let mut p = ptr::null_mut();
        check(unsafe { sys::mp_task_sinusoid(&mut p, seed, index, k_support, k_query) }, None)?;
        Ok(Task { ptr: p })
    }
    pub fn error(&self) -> String {
        text(unsafe { sys::mp_task_error(self.ptr) })
    }
    pub fn sizes(&self) -> Result<TaskSizes> {
        let mut s = TaskSizes { n_support: 0, n_query: 0, dim: 0, n_way: 0, target_dim: 0 };
        let st = unsafe {
            sys::mp_task_sizes(self.ptr, &mut s.n_support, &mut s.n_query, &mut s.dim, &mut s.n_way,
                               &mut s.target_dim)
        };
        out_or_err(st, self.error(), s)
    }
    fn set(&self, query: bool) -> Result<(Vec<f32>, Outputs)> {
        let s = self.sizes()?;
        let n = if query { s.n_query } else { s.n_support };
        let f = if query { sys::mp_task_get_query } else { sys::mp_task_get_support };
        let rows = |what: &str, width: i32| -> Result<usize> {
            let w = to_usize("Task::support/query", what, width)?;
            n.checked_mul(w).ok_or_else(|| Error {
                status: status::ERR_RANGE,
                message: format!("Task::support/query: {} rows x {} {} overflows", n, w, what),
            })
        };
        let mut x = vec![0f32; rows("dim", s.dim)?];
        let st;
        let out = if s.target_dim > 0 {
            let mut t = vec![0f32; rows("target_dim", s.target_dim)?];
            st = unsafe { f(self.ptr, x.as_mut_ptr(), x.len(), ptr::null_mut(), 0, t.as_mut_ptr(), t.len()) };
            Outputs::Targets(t)
        } else {
            let mut l = vec![0i32; n];
            st = unsafe { f(self.ptr, x.as_mut_ptr(), x.len(), l.as_mut_ptr(), l.len(), ptr::null_mut(), 0) };
            Outputs::Labels(l)
        };
        out_or_err(st, self.error(), (x, out))
    }
    /// Support rows (row-major) and their labels or targets.
    pub fn support(&self) -> Result<(Vec<f32>, Outputs)> {
        self.set(false)
    }
    pub fn query(&self) -> Result<(Vec<f32>, Outputs)> {
        self.set(true)
    }
    /// (amplitude, phase) of a sinusoid task.
    pub fn sinusoid_params(&self) -> Result<(f64, f64)> {
        let (mut a, mut p) = (0f64, 0f64);
        let st = unsafe { sys::mp_task_sinusoid_params(self.ptr, &mut a, &mut p) };
        out_or_err(st, self.error(), (a, p))
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        unsafe { sys::mp_task_destroy(self.ptr) }
    }
}

/// Draws N-way K-shot Q-query episodes (mp_sampler); borrows its dataset.
pub struct Sampler<'a> {
    ptr: *mut sys::mp_sampler,
    _ds: PhantomData<&'a Dataset>,
}

// SAFETY: data.h: episode, episode_into, get_position and info are
// thread-safe on a const sampler (get_position is a plain read that must not
// overlap next/set_position, which take &mut self here, so it cannot).
unsafe impl<'a> Send for Sampler<'a> {}
unsafe impl<'a> Sync for Sampler<'a> {}

impl<'a> Sampler<'a> {
    /// Over a classification dataset (keys CFG_DATA_WAYS/SHOTS/QUERIES/ROTATIONS, CFG_SEED).
    pub fn new(ds: &'a Dataset, cfg: Option<&Config>) -> Result<Sampler<'a>> {
        let mut p = ptr::null_mut();
        check(unsafe { sys::mp_sampler_create(&mut p, ds.ptr, cfg_ptr(cfg)) }, None)?;
        Ok(Sampler { ptr: p, _ds: PhantomData })
    }
    pub(crate) fn as_ptr(&self) -> *const sys::mp_sampler {
        self.ptr
    }
    pub(crate) fn as_mut_ptr(&mut self) -> *mut sys::mp_sampler {
        self.ptr
    }
    pub fn error(&self) -> String {
        text(unsafe { sys::mp_sampler_error(self.ptr) })
    }
    pub fn episode(&self, index: u64) -> Result<Task> {
        let mut t = ptr::null_mut();
        let st = unsafe { sys::mp_sampler_episode(self.ptr, index, &mut t) };
        out_or_err(st, self.error(), ())?;
        Ok(Task { ptr: t })
    }
    /// Writes episode index into an existing task (no allocation when sizes match).
    pub fn episode_into(&self, index: u64, task: &mut Task) -> Result<()> {
        let st = unsafe { sys::mp_sampler_episode_into(self.ptr, index, task.ptr) };
        out_or_err(st, self.error(), ())
    }
    /// The episode at the current position, then advances it.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Task> {
        let mut t = ptr::null_mut();
        let st = unsafe { sys::mp_sampler_next(self.ptr, &mut t) };
        out_or_err(st, self.error(), ())?;
        Ok(Task { ptr: t })
    }
    pub fn position(&self) -> Result<u64> {
        let mut v = 0u64;
        let st = unsafe { sys::mp_sampler_get_position(self.ptr, &mut v) };
        out_or_err(st, self.error(), v)
    }
    pub fn set_position(&mut self, position: u64) -> Result<()> {
        let st = unsafe { sys::mp_sampler_set_position(self.ptr, position) };
        out_or_err(st, self.error(), ())
    }
    /// (ways, shots, queries, dim).
    pub fn info(&self) -> Result<(i32, i32, i32, i32)> {
        let (mut w, mut s, mut q, mut d) = (0, 0, 0, 0);
        let st = unsafe { sys::mp_sampler_info(self.ptr, &mut w, &mut s, &mut q, &mut d) };
        out_or_err(st, self.error(), (w, s, q, d))
    }
}

impl Sampler<'static> {
    /// Sinusoid regression tasks (CFG_DATA_SHOTS / CFG_DATA_QUERIES points).
    pub fn sinusoid(cfg: Option<&Config>) -> Result<Sampler<'static>> {
        let mut p = ptr::null_mut();
        check(unsafe { sys::mp_sampler_create_sinusoid(&mut p, cfg_ptr(cfg)) }, None)?;
        Ok(Sampler { ptr: p, _ds: PhantomData })
    }
}

impl<'a> Drop for Sampler<'a> {
    fn drop(&mut self) {
        unsafe { sys::mp_sampler_destroy(self.ptr) }
    }
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dataset({:p})", self.ptr)
    }
}
impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Task({:p})", self.ptr)
    }
}
impl<'a> std::fmt::Debug for Sampler<'a> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sampler({:p})", self.ptr)
    }
}
