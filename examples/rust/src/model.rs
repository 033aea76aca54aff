//! model.h: models, soft prompts and checkpoints.
use crate::{c_string, cfg_ptr, check, check_len, rows_of, shape_len, status, sys, text, to_usize, Config, Result};
use std::ptr;

pub const MODEL_MLP: i32 = 1;
pub const MODEL_TRANSFORMER: i32 = 2;
pub const MODEL_CONV: i32 = 3;
pub const TASK_AUTO: i32 = 0;
pub const TASK_CLASSIFICATION: i32 = 1;
pub const TASK_REGRESSION: i32 = 2;
pub const ACT_RELU: i32 = 1;
pub const ACT_TANH: i32 = 2;
pub const ACT_GELU: i32 = 3;
pub const ACT_SIGMOID: i32 = 4;
pub const PROMPT_INPUT_CHANNELS: i32 = 1;
pub const PROMPT_HEAD_FEATURES: i32 = 2;
pub const PROMPT_INIT_ZEROS: i32 = 0;
pub const PROMPT_INIT_NORMAL: i32 = 1;
pub const PROMPT_INIT_UNIFORM: i32 = 2;
pub const CFG_MODEL_KIND: i32 = 100;
pub const CFG_MODEL_INPUT_DIM: i32 = 101;
pub const CFG_MODEL_OUTPUT_DIM: i32 = 102;
pub const CFG_MODEL_TASK: i32 = 103;
pub const CFG_MODEL_PROMPT_LEN: i32 = 104;
pub const CFG_MODEL_PROMPT_DIM: i32 = 105;
pub const CFG_MODEL_HIDDEN_LAYERS: i32 = 106;
pub const CFG_MODEL_HIDDEN_WIDTH: i32 = 107;
pub const CFG_MODEL_ACTIVATION: i32 = 108;
pub const CFG_MODEL_IMAGE_HEIGHT: i32 = 109;
pub const CFG_MODEL_IMAGE_WIDTH: i32 = 110;
pub const CFG_MODEL_IMAGE_CHANNELS: i32 = 111;
pub const CFG_MODEL_PATCH: i32 = 112;
pub const CFG_MODEL_VOCAB: i32 = 113;
pub const CFG_MODEL_SEQ_LEN: i32 = 114;
pub const CFG_MODEL_D_MODEL: i32 = 115;
pub const CFG_MODEL_LAYERS: i32 = 116;
pub const CFG_MODEL_HEADS: i32 = 117;
pub const CFG_MODEL_MLP_DIM: i32 = 118;
pub const CFG_MODEL_CHANNELS: i32 = 119;
pub const CFG_MODEL_CONV_BLOCKS: i32 = 120;
pub const CFG_MODEL_PROMPT_MODE: i32 = 121;
pub const CFG_MODEL_INIT: i32 = 122;
pub const INIT_HE: i32 = 0;
pub const INIT_TORCH: i32 = 1;

/// A backbone + head with a prompt slot (mp_model).
pub struct Model {
    pub(crate) ptr: *mut sys::mp_model,
}

// SAFETY: distinct models may be used from distinct threads (model.h). The
// header also allows concurrent read-only calls on one model, but the
// binding stays conservative: Send, not Sync.
unsafe impl Send for Model {}

fn prompt_ptr(p: Option<&Prompt>) -> *const sys::mp_prompt {
    p.map_or(ptr::null(), |p| p.ptr)
}

impl Model {
    /// A model from a configuration (None: the 1-40-40-1 sinusoid MLP).
    pub fn new(cfg: Option<&Config>) -> Result<Model> {
        let mut p = ptr::null_mut();
        check(unsafe { sys::mp_model_create(&mut p, cfg_ptr(cfg)) }, None)?;
        Ok(Model { ptr: p })
    }
    /// A model with the configuration and parameters stored in a checkpoint.
    pub fn from_checkpoint(path: &str) -> Result<Model> {
        let c = c_string("Model::from_checkpoint", path)?;
        let mut p = ptr::null_mut();
        check(unsafe { sys::mp_model_create_from_checkpoint(&mut p, c.as_ptr()) }, None)?;
        Ok(Model { ptr: p })
    }
    pub fn try_clone(&self) -> Result<Model> {
        let mut p = ptr::null_mut();
        check(unsafe { sys::mp_model_clone(&mut p, self.ptr) }, None)?;
        Ok(Model { ptr: p })
    }
    pub fn error(&self) -> String {
        text(unsafe { sys::mp_model_error(self.ptr) })
    }
    fn check(&self, st: i32) -> Result<()> {
        if st == status::OK {
            return Ok(());
        }
        check(st, Some(self.error()))
    }
    /// Resolved value of a CFG_MODEL_* key (or CFG_SEED).
    pub fn get_int(&self, key: i32) -> Result<i64> {
        let mut v = 0i64;
        self.check(unsafe { sys::mp_model_get_int(self.ptr, key, &mut v) })?;
        Ok(v)
    }
    pub fn input_dim(&self) -> Result<usize> {
        to_usize("Model::input_dim", "model.input_dim", self.get_int(CFG_MODEL_INPUT_DIM)?)
    }
    pub fn output_dim(&self) -> Result<usize> {
        to_usize("Model::output_dim", "model.output_dim", self.get_int(CFG_MODEL_OUTPUT_DIM)?)
    }
    pub fn num_params(&self) -> Result<usize> {
        let mut n = 0usize;
        self.check(unsafe { sys::mp_model_num_params(self.ptr, &mut n) })?;
        Ok(n)
    }
    /// All parameters (layout: docs/MODELS.md).
    pub fn params(&self) -> Result<Vec<f32>> {
        let mut v = vec![0f32; self.num_params()?];
        self.check(unsafe { sys::mp_model_get_params(self.ptr, v.as_mut_ptr(), v.len()) })?;
        Ok(v)
    }
    pub fn set_params(&mut self, values: &[f32]) -> Result<()> {
        self.check(unsafe { sys::mp_model_set_params(self.ptr, values.as_ptr(), values.len()) })
    }
    /// (P, d) of the model's prompt.
    pub fn prompt_shape(&self) -> Result<(i32, i32)> {
        let (mut r, mut c) = (0, 0);
        self.check(unsafe { sys::mp_model_prompt_shape(self.ptr, &mut r, &mut c) })?;
        Ok((r, c))
    }
    /// Outputs (n x output_dim, row-major) for the rows of x (n x input_dim);
    /// prompt None means an all-zero prompt.
    pub fn predict(&self, x: &[f32], prompt: Option<&Prompt>) -> Result<Vec<f32>> {
        let n = x.len() / self.input_dim()?.max(1);
        let mut out = vec![0f32; n * self.output_dim()?];
        self.check(unsafe {
            sys::mp_model_predict(self.ptr, prompt_ptr(prompt), x.as_ptr(), n, x.len(),
                                  out.as_mut_ptr(), out.len())
        })?;
        Ok(out)
    }
    /// Mean cross-entropy against labels (classifier) or MSE against
    /// targets (regressor) over the n rows of x (x.len() = n * input_dim).
    /// labels, when given, must hold n ids and targets n * output_dim
    /// values (else ERR_SHAPE_MISMATCH naming the argument): the library
    /// reads n of them.
    pub fn loss(&self, x: &[f32], labels: Option<&[i32]>, targets: Option<&[f32]>,
                prompt: Option<&Prompt>) -> Result<f32> {
        const F: &str = "Model::loss";
        let d = self.input_dim()?.max(1);
        let n = rows_of(F, "x", x.len(), d, &format!("rows of input_dim {}", d))?;
        if let Some(l) = labels {
            check_len(F, "labels", l.len(), n, 1, &format!("one per row of x, {} rows", n))?;
        }
        if let Some(t) = targets {
            let od = self.output_dim()?;
            check_len(F, "targets", t.len(), n, od, &format!("{} rows x output_dim {}", n, od))?;
        }
        let mut l = 0f32;
        self.check(unsafe {
            sys::mp_model_loss(self.ptr, prompt_ptr(prompt), x.as_ptr(), n, x.len(),
                               labels.map_or(ptr::null(), |v| v.as_ptr()),
                               targets.map_or(ptr::null(), |v| v.as_ptr()), &mut l)
        })?;
        Ok(l)
    }
    /// Saves the model and an optional prompt (atomically). A meta's state
    /// is saved with Meta::save_checkpoint.
    pub fn save_checkpoint(&self, path: &str, prompt: Option<&Prompt>) -> Result<()> {
        let c = c_string("Model::save_checkpoint", path)?;
        check(unsafe { sys::mp_checkpoint_save(c.as_ptr(), self.ptr, prompt_ptr(prompt), ptr::null()) }, None)
    }
    /// Loads parameters (and a prompt) from a checkpoint; nothing changes on failure.
    pub fn load_checkpoint(&mut self, path: &str, prompt: Option<&mut Prompt>) -> Result<()> {
        let c = c_string("Model::load_checkpoint", path)?;
        let pp = prompt.map_or(ptr::null_mut(), |p| p.ptr);
        self.check(unsafe { sys::mp_checkpoint_load(c.as_ptr(), self.ptr, pp, ptr::null_mut()) })
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Model({:p})", self.ptr)
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        unsafe { sys::mp_model_destroy(self.ptr) }
    }
}

/// A P x d soft prompt shaped for a model (mp_prompt); starts at zero.
pub struct Prompt {
    pub(crate) ptr: *mut sys::mp_prompt,
}

// SAFETY: distinct prompts may be used from distinct threads.
unsafe impl Send for Prompt {}

impl Prompt {
    pub fn new(model: &Model) -> Result<Prompt> {
        let mut p = ptr::null_mut();
        check(unsafe { sys::mp_prompt_create(&mut p, model.ptr) }, None)?;
        Ok(Prompt { ptr: p })
    }
    pub fn error(&self) -> String {
        text(unsafe { sys::mp_prompt_error(self.ptr) })
    }
    fn check(&self, st: i32) -> Result<()> {
        if st == status::OK {
            return Ok(());
        }
        check(st, Some(self.error()))
    }
    pub fn shape(&self) -> Result<(i32, i32)> {
        let (mut r, mut c) = (0, 0);
        self.check(unsafe { sys::mp_prompt_shape(self.ptr, &mut r, &mut c) })?;
        Ok((r, c))
    }
    /// PROMPT_INIT_ZEROS / NORMAL (N(0, scale^2)) / UNIFORM (U(-scale, scale)).
    pub fn init(&mut self, method: i32, scale: f64, seed: u64) -> Result<()> {
        self.check(unsafe { sys::mp_prompt_init(self.ptr, method, scale, seed) })
    }
    /// Initialises from example rows of model's input.
    pub fn init_from_data(&mut self, model: &Model, x: &[f32]) -> Result<()> {
        let n = x.len() / model.input_dim()?.max(1);
        self.check(unsafe { sys::mp_prompt_init_from_data(self.ptr, model.ptr, x.as_ptr(), n, x.len()) })
    }
    /// The P*d values, row-major.
    pub fn values(&self) -> Result<Vec<f32>> {
        let (r, c) = self.shape()?;
        let mut v = vec![0f32; shape_len("Prompt::values", r, c)?];
        self.check(unsafe { sys::mp_prompt_get(self.ptr, v.as_mut_ptr(), v.len()) })?;
        Ok(v)
    }
    pub fn set_values(&mut self, values: &[f32]) -> Result<()> {
        self.check(unsafe { sys::mp_prompt_set(self.ptr, values.as_ptr(), values.len()) })
    }
    pub fn copy_from(&mut self, src: &Prompt) -> Result<()> {
        self.check(unsafe { sys::mp_prompt_copy(self.ptr, src.ptr) })
    }
}

impl std::fmt::Debug for Prompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Prompt({:p})", self.ptr)
    }
}

impl Drop for Prompt {
    fn drop(&mut self) {
        unsafe { sys::mp_prompt_destroy(self.ptr) }
    }
}
