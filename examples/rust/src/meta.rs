//! meta.h: the meta-optimizers (MAML, FOMAML, Reptile, Meta-SGD).
use crate::{c_string, cfg_ptr, check, status, sys, text, Config, Model, Prompt, Result, Sampler, Task};
use std::os::raw::c_void;
use std::ptr;

pub const CFG_META_ALGORITHM: i32 = 300;
pub const CFG_META_INNER_STEPS: i32 = 301;
pub const CFG_META_INNER_LR: i32 = 302;
pub const CFG_META_SCOPE: i32 = 303;
pub const CFG_META_LEARN: i32 = 304;
pub const CFG_META_OPTIMIZER: i32 = 305;
pub const CFG_META_OUTER_LR: i32 = 306;
pub const CFG_META_MOMENTUM: i32 = 307;
pub const CFG_META_BETA1: i32 = 308;
pub const CFG_META_BETA2: i32 = 309;
pub const CFG_META_EPSILON: i32 = 310;
pub const CFG_META_WEIGHT_DECAY: i32 = 311;
pub const CFG_META_CLIP_NORM: i32 = 312;
pub const CFG_META_EVAL_INNER_STEPS: i32 = 313;
pub const META_MAML: i32 = 1;
pub const META_FOMAML: i32 = 2;
pub const META_REPTILE: i32 = 3;
pub const META_METASGD: i32 = 4;
pub const SCOPE_PROMPT: i32 = 1;
pub const SCOPE_PROMPT_HEAD: i32 = 2;
pub const SCOPE_ALL: i32 = 3;
pub const LEARN_PROMPT: i32 = 1;
pub const LEARN_HEAD: i32 = 2;
pub const LEARN_BACKBONE: i32 = 4;
pub const LEARN_INNER_LR: i32 = 8;
pub const OPT_SGD: i32 = 1;
pub const OPT_ADAM: i32 = 2;
pub const OPT_ADAMW: i32 = 3;
pub const META_STAT_LOSS_BEFORE: usize = 0;
pub const META_STAT_LOSS_AFTER: usize = 1;
pub const META_STAT_ACC_BEFORE: usize = 2;
pub const META_STAT_ACC_AFTER: usize = 3;
pub const META_NUM_STATS: usize = 4;

/// Mean query loss and accuracy (NaN for regression) of a meta-batch,
/// before and after adaptation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetaStats {
    pub loss_before: f64,
    pub loss_after: f64,
    pub acc_before: f64,
    pub acc_after: f64,
}

/// A progress callback for [`Meta::set_progress`]: `f(done, total)` returns
/// true to cancel.
pub type Progress = Box<dyn FnMut(u64, u64) -> bool + Send>;

/// A meta-learner (mp_meta). It mutably borrows the model and prompt it
/// trains (they are the meta-parameters, updated in place); read them
/// through model() and prompt().
pub struct Meta<'a> {
    ptr: *mut sys::mp_meta,
    model: &'a mut Model,
    prompt: Option<&'a mut Prompt>,
    progress: Option<Box<Progress>>,
}

// SAFETY: distinct handles may be used from distinct threads (the meta's
// workers are its own); not shared (not Sync). The progress callback runs on
// whichever thread calls evaluate, hence it must be Send.
unsafe impl<'a> Send for Meta<'a> {}

fn task_ptrs(tasks: &[&Task]) -> Vec<*mut sys::mp_task> {
    tasks.iter().map(|t| t.ptr).collect()
}

unsafe extern "C" fn progress_trampoline(done: u64, total: u64, user: *mut c_void) -> i32 {
    let f = &mut *(user as *mut Progress);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(done, total))) {
        Ok(stop) => stop as i32,
        Err(_) => 1, // a panicking callback cancels
    }
}

impl<'a> Meta<'a> {
    /// prompt None only for a model without prompt (P == 0).
    pub fn new(model: &'a mut Model, prompt: Option<&'a mut Prompt>, cfg: Option<&Config>) -> Result<Meta<'a>> {
        let mut p = ptr::null_mut();
        let pp = match &prompt {
            Some(pr) => pr.ptr,
            None => ptr::null_mut(),
        };
        check(unsafe { sys::mp_meta_create(&mut p, model.ptr, pp, cfg_ptr(cfg)) }, None)?;
        Ok(Meta { ptr: p, model, prompt, progress: None })
    }
    pub fn model(&self) -> &Model {
        self.model
    }
    pub fn prompt(&self) -> Option<&Prompt> {
        self.prompt.as_deref()
    }
    pub fn error(&self) -> String {
        text(unsafe { sys::mp_meta_error(self.ptr) })
    }
    fn check(&self, st: i32) -> Result<()> {
        if st == status::OK {
            return Ok(());
        }
        check(st, Some(self.error()))
    }
    fn batch(&mut self, tasks: &[&Task], step: bool) -> Result<MetaStats> {
        let ptrs = task_ptrs(tasks);
        let mut s = [0f64; META_NUM_STATS];
        let st = unsafe {
            if step {
                sys::mp_meta_step(self.ptr, ptrs.as_ptr(), ptrs.len(), s.as_mut_ptr(), s.len())
            } else {
                sys::mp_meta_compute_gradients(self.ptr, ptrs.as_ptr(), ptrs.len(), s.as_mut_ptr(), s.len())
            }
        };
        self.check(st)?;
        Ok(MetaStats { loss_before: s[0], loss_after: s[1], acc_before: s[2], acc_after: s[3] })
    }
    /// One meta-update on a meta-batch.
    pub fn step(&mut self, tasks: &[&Task]) -> Result<MetaStats> {
        self.batch(tasks, true)
    }
    /// The meta-gradient of a meta-batch, kept for apply_gradients.
    pub fn compute_gradients(&mut self, tasks: &[&Task]) -> Result<MetaStats> {
        self.batch(tasks, false)
    }
    pub fn gradient_size(&self) -> Result<usize> {
        let mut n = 0usize;
        self.check(unsafe { sys::mp_meta_gradient_size(self.ptr, &mut n) })?;
        Ok(n)
    }
    pub fn gradients(&self) -> Result<Vec<f32>> {
        let mut g = vec![0f32; self.gradient_size()?];
        self.check(unsafe { sys::mp_meta_get_gradients(self.ptr, g.as_mut_ptr(), g.len()) })?;
        Ok(g)
    }
    /// Replaces the gradient (e.g. after an external all-reduce).
    pub fn set_gradients(&mut self, g: &[f32]) -> Result<()> {
        self.check(unsafe { sys::mp_meta_set_gradients(self.ptr, g.as_ptr(), g.len()) })
    }
    pub fn apply_gradients(&mut self) -> Result<()> {
        self.check(unsafe { sys::mp_meta_apply_gradients(self.ptr) })
    }
    pub fn step_count(&self) -> Result<i64> {
        let mut n = 0i64;
        self.check(unsafe { sys::mp_meta_step_count(self.ptr, &mut n) })?;
        Ok(n)
    }
    /// Adapts to one task without touching the meta-parameters: the adapted
    /// prompt goes to out_prompt, all adapted parameters to out_model.
    pub fn adapt(&self, task: &Task, out_prompt: Option<&mut Prompt>, out_model: Option<&mut Model>) -> Result<()> {
        let pp = out_prompt.map_or(ptr::null_mut(), |p| p.ptr);
        let mp = out_model.map_or(ptr::null_mut(), |m| m.ptr);
        self.check(unsafe { sys::mp_meta_adapt(self.ptr, task.ptr, pp, mp) })
    }
    /// (mean, ci95) of query accuracy or MSE after adaptation over episodes
    /// first .. first + n - 1.
    pub fn evaluate(&mut self, sampler: &Sampler<'_>, first: u64, n: usize) -> Result<(f64, f64)> {
        let (mut m, mut c) = (0f64, 0f64);
        self.check(unsafe { sys::mp_meta_evaluate(self.ptr, sampler.as_ptr(), first, n, &mut m, &mut c) })?;
        Ok((m, c))
    }
    pub fn evaluate_tasks(&mut self, tasks: &[&Task]) -> Result<(f64, f64)> {
        let ptrs = task_ptrs(tasks);
        let (mut m, mut c) = (0f64, 0f64);
        self.check(unsafe { sys::mp_meta_evaluate_tasks(self.ptr, ptrs.as_ptr(), ptrs.len(), &mut m, &mut c) })?;
        Ok((m, c))
    }
    /// f(done, total) -> true to cancel evaluate* (ERR_CANCELLED); None removes it.
    pub fn set_progress(&mut self, f: Option<Progress>) -> Result<()> {
        let boxed = f.map(Box::new);
        let (cb, user): (sys::mp_meta_progress_fn, *mut c_void) = match &boxed {
            Some(b) => (Some(progress_trampoline), &**b as *const Progress as *mut c_void),
            None => (None, ptr::null_mut()),
        };
        self.check(unsafe { sys::mp_meta_set_progress(self.ptr, cb, user) })?;
        self.progress = boxed;
        Ok(())
    }
    pub fn set_eval_steps(&mut self, steps: i32) -> Result<()> {
        self.check(unsafe { sys::mp_meta_set_eval_steps(self.ptr, steps) })
    }
    /// A meta integer key's current value (`CFG_META_*`, `CFG_THREADS`).
    pub fn get_int(&self, key: i32) -> Result<i64> {
        let mut v = 0i64;
        self.check(unsafe { sys::mp_meta_get_int(self.ptr, key, &mut v) })?;
        Ok(v)
    }
    /// A meta float key's current value.
    pub fn get_float(&self, key: i32) -> Result<f64> {
        let mut v = 0f64;
        self.check(unsafe { sys::mp_meta_get_float(self.ptr, key, &mut v) })?;
        Ok(v)
    }
    /// Changes an integer hyper-parameter between steps (inner steps, eval
    /// inner steps, MAML/FOMAML/Reptile switches); see `mp_meta_set_int`.
    pub fn set_int(&mut self, key: i32, value: i64) -> Result<&mut Self> {
        self.check(unsafe { sys::mp_meta_set_int(self.ptr, key, value) })?;
        Ok(self)
    }
    /// Changes a float hyper-parameter between steps (e.g. an outer
    /// learning-rate schedule); see `mp_meta_set_float`.
    pub fn set_float(&mut self, key: i32, value: f64) -> Result<&mut Self> {
        self.check(unsafe { sys::mp_meta_set_float(self.ptr, key, value) })?;
        Ok(self)
    }
    /// Meta-SGD's learned per-element inner rates (empty otherwise).
    pub fn inner_lr(&self) -> Result<Vec<f32>> {
        let mut n = 0usize;
        self.check(unsafe { sys::mp_meta_inner_lr_count(self.ptr, &mut n) })?;
        let mut v = vec![0f32; n];
        self.check(unsafe { sys::mp_meta_get_inner_lr(self.ptr, v.as_mut_ptr(), v.len()) })?;
        Ok(v)
    }
    /// Saves the model, prompt and this meta's state (optimizer moments, step, rates).
    pub fn save_checkpoint(&self, path: &str) -> Result<()> {
        let c = c_string("Meta::save_checkpoint", path)?;
        let pp = self.prompt.as_ref().map_or(ptr::null(), |p| p.ptr as *const sys::mp_prompt);
        check(unsafe { sys::mp_checkpoint_save(c.as_ptr(), self.model.ptr, pp, self.ptr) }, None)
    }
    /// Loads model, prompt and meta state from a checkpoint; nothing changes on failure.
    pub fn load_checkpoint(&mut self, path: &str) -> Result<()> {
        let c = c_string("Meta::load_checkpoint", path)?;
        let pp = self.prompt.as_ref().map_or(ptr::null_mut(), |p| p.ptr);
        check(unsafe { sys::mp_checkpoint_load(c.as_ptr(), self.model.ptr, pp, self.ptr) }, None)
    }
    /// As save_checkpoint, plus the position and identity of the sampler the
    /// training tasks come from, so that a run drawing with Sampler::next
    /// resumes exactly where it stopped.
    pub fn save_checkpoint_with_sampler(&self, path: &str, sampler: &Sampler) -> Result<()> {
        let c = c_string("Meta::save_checkpoint_with_sampler", path)?;
        let pp = self.prompt.as_ref().map_or(ptr::null(), |p| p.ptr as *const sys::mp_prompt);
        check(unsafe {
            sys::mp_checkpoint_save_with_sampler(c.as_ptr(), self.model.ptr, pp, self.ptr, sampler.as_ptr())
        }, None)
    }
    /// As load_checkpoint, plus the sampler's position; the file must hold a
    /// sampler configured like this one. Nothing changes on failure.
    pub fn load_checkpoint_with_sampler(&mut self, path: &str, sampler: &mut Sampler) -> Result<()> {
        let c = c_string("Meta::load_checkpoint_with_sampler", path)?;
        let pp = self.prompt.as_ref().map_or(ptr::null_mut(), |p| p.ptr);
        check(unsafe {
            sys::mp_checkpoint_load_with_sampler(c.as_ptr(), self.model.ptr, pp, self.ptr, sampler.as_mut_ptr())
        }, None)
    }
}

impl<'a> std::fmt::Debug for Meta<'a> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Meta({:p})", self.ptr)
    }
}

impl<'a> Drop for Meta<'a> {
    fn drop(&mut self) {
        // Destroy first: the C side may hold the progress closure's pointer.
        unsafe { sys::mp_meta_destroy(self.ptr) }
    }
}
