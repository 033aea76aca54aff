//! The autodiff tape (tape.h, the advanced API).
use crate::{check, shape_len, status, sys, text, Result};

/// A variable id on one tape (opaque), valid until reset or drop; an id from
/// before a reset or from another tape gives ERR_UNKNOWN_VARIABLE.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Var(pub i32);

/// "No variable" (an optional bias, gamma or beta).
pub const VAR_NONE: Var = Var(-1);

pub const REDUCE_ALL: i32 = 0;
pub const REDUCE_PER_ROW: i32 = 1;
pub const REDUCE_PER_COL: i32 = 2;
pub const AXIS_ROWS: i32 = 0;
pub const AXIS_COLS: i32 = 1;
pub const LEAF_REQUIRES_GRAD: i32 = 1;
pub const LEAF_BORROW: i32 = 2;
pub const TAPE_STAT_NODES: i32 = 0;
pub const TAPE_STAT_ARENA_USED: i32 = 1;
pub const TAPE_STAT_ARENA_HIGH: i32 = 2;
pub const TAPE_STAT_HEAP_BYTES: i32 = 3;
/// Short aliases of the TAPE_STAT_* constants.
pub const STAT_NODES: i32 = TAPE_STAT_NODES;
pub const STAT_ARENA_USED: i32 = TAPE_STAT_ARENA_USED;
pub const STAT_ARENA_HIGH: i32 = TAPE_STAT_ARENA_HIGH;
pub const STAT_HEAP_BYTES: i32 = TAPE_STAT_HEAP_BYTES;

/// An autodiff tape (mp_tape). Leaves are always copied: the borrow flag
/// (MP_LEAF_BORROW) would need the buffer to outlive the next reset, which
/// the safe API does not track; use [`sys::mp_tape_leaf`] for it.
pub struct Tape {
    ptr: *mut sys::mp_tape,
}

// SAFETY: tape.h: "a tape is not thread-safe; distinct tapes may be used from
// distinct threads concurrently" -> Send, not Sync.
unsafe impl Send for Tape {}

fn opt(v: Option<Var>) -> i32 {
    v.map_or(-1, |x| x.0)
}

impl Tape {
    pub fn new() -> Result<Tape> {
        let mut p = std::ptr::null_mut();
        check(unsafe { sys::mp_tape_create(&mut p) }, None)?;
        Ok(Tape { ptr: p })
    }
    /// The message of the last failed call on this tape.
    pub fn error(&self) -> String {
        text(unsafe { sys::mp_tape_error(self.ptr) })
    }
    fn check(&self, st: i32) -> Result<()> {
        if st == status::OK {
            return Ok(());
        }
        check(st, Some(self.error()))
    }
    fn op(&mut self, f: impl FnOnce(*mut sys::mp_tape, *mut i32) -> i32) -> Result<Var> {
        let mut out = -1;
        let st = f(self.ptr, &mut out);
        self.check(st)?;
        Ok(Var(out))
    }
    /// The raw handle (borrowed).
    pub fn as_ptr(&mut self) -> *mut sys::mp_tape {
        self.ptr
    }

    /// Forgets every variable (ids become invalid); memory is kept.
    pub fn reset(&mut self) -> Result<()> {
        self.check(unsafe { sys::mp_tape_reset(self.ptr) })
    }
    /// One statistic (STAT_*).
    pub fn stat(&self, which: i32) -> Result<i64> {
        let mut v = 0i64;
        self.check(unsafe { sys::mp_tape_stat(self.ptr, which, &mut v) })?;
        Ok(v)
    }
    /// A rows x cols leaf copied from data (row-major).
    pub fn leaf(&mut self, rows: i32, cols: i32, data: &[f32], requires_grad: bool) -> Result<Var> {
        let flags = if requires_grad { LEAF_REQUIRES_GRAD } else { 0 };
        self.op(|t, o| unsafe { sys::mp_tape_leaf(t, rows, cols, data.as_ptr(), data.len(), flags, o) })
    }
    pub fn fill(&mut self, rows: i32, cols: i32, value: f32) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_tape_fill(t, rows, cols, value, o) })
    }
    pub fn shape(&self, v: Var) -> Result<(i32, i32)> {
        let (mut r, mut c) = (0, 0);
        self.check(unsafe { sys::mp_tape_shape(self.ptr, v.0, &mut r, &mut c) })?;
        Ok((r, c))
    }
    /// Copies v's values into buf (len >= rows*cols).
    pub fn read_into(&self, v: Var, buf: &mut [f32]) -> Result<()> {
        self.check(unsafe { sys::mp_tape_read(self.ptr, v.0, buf.as_mut_ptr(), buf.len()) })
    }
    /// v's values, row-major.
    pub fn read(&self, v: Var) -> Result<Vec<f32>> {
        let (r, c) = self.shape(v)?;
        let mut buf = vec![0f32; shape_len("Tape::read", r, c)?];
        self.read_into(v, &mut buf)?;
        Ok(buf)
    }
    pub fn scalar(&self, v: Var) -> Result<f32> {
        let mut x = 0f32;
        self.check(unsafe { sys::mp_tape_scalar(self.ptr, v.0, &mut x) })?;
        Ok(x)
    }
    /// Reverse sweep from a 1x1 loss; create_graph makes gradients differentiable.
    pub fn backward(&mut self, loss: Var, create_graph: bool) -> Result<()> {
        self.check(unsafe { sys::mp_tape_backward(self.ptr, loss.0, create_graph as i32) })
    }
    /// Like backward, but only along paths from the variables in wrt.
    pub fn backward_wrt(&mut self, loss: Var, wrt: &[Var], create_graph: bool) -> Result<()> {
        let ids: Vec<i32> = wrt.iter().map(|v| v.0).collect();
        self.check(unsafe {
            sys::mp_tape_backward_wrt(self.ptr, loss.0, create_graph as i32, ids.as_ptr(), ids.len())
        })
    }
    pub fn grad(&mut self, v: Var) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_tape_grad(t, v.0, o) })
    }

    pub fn matmul(&mut self, a: Var, b: Var, trans_a: bool, trans_b: bool) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_matmul(t, a.0, b.0, trans_a as i32, trans_b as i32, o) })
    }
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_add(t, a.0, b.0, o) })
    }
    pub fn sub(&mut self, a: Var, b: Var) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_sub(t, a.0, b.0, o) })
    }
    pub fn mul(&mut self, a: Var, b: Var) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_mul(t, a.0, b.0, o) })
    }
    pub fn div(&mut self, a: Var, b: Var) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_div(t, a.0, b.0, o) })
    }
    pub fn scale(&mut self, a: Var, s: f32) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_scale(t, a.0, s, o) })
    }
    pub fn add_scalar(&mut self, a: Var, s: f32) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_add_scalar(t, a.0, s, o) })
    }
    pub fn sum(&mut self, a: Var, reduce: i32) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_sum(t, a.0, reduce, o) })
    }
    pub fn mean(&mut self, a: Var, reduce: i32) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_mean(t, a.0, reduce, o) })
    }
    pub fn relu(&mut self, a: Var) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_relu(t, a.0, o) })
    }
    pub fn tanh(&mut self, a: Var) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_tanh(t, a.0, o) })
    }
    pub fn sigmoid(&mut self, a: Var) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_sigmoid(t, a.0, o) })
    }
    pub fn gelu(&mut self, a: Var) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_gelu(t, a.0, o) })
    }
    pub fn exp(&mut self, a: Var) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_exp(t, a.0, o) })
    }
    pub fn log(&mut self, a: Var) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_log(t, a.0, o) })
    }
    pub fn sqrt(&mut self, a: Var) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_sqrt(t, a.0, o) })
    }
    pub fn square(&mut self, a: Var) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_square(t, a.0, o) })
    }
    pub fn softmax(&mut self, a: Var) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_softmax(t, a.0, o) })
    }
    pub fn log_softmax(&mut self, a: Var) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_log_softmax(t, a.0, o) })
    }
    /// Mean cross-entropy of logits against one integer label per row.
    pub fn cross_entropy(&mut self, logits: Var, labels: &[i32]) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_cross_entropy(t, logits.0, labels.as_ptr(), labels.len(), o) })
    }
    pub fn mse(&mut self, pred: Var, target: Var) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_mse(t, pred.0, target.0, o) })
    }
    pub fn layer_norm(&mut self, x: Var, gamma: Option<Var>, beta: Option<Var>, eps: f32) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_layer_norm(t, x.0, opt(gamma), opt(beta), eps, o) })
    }
    pub fn gather_rows(&mut self, table: Var, idx: &[i32]) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_gather_rows(t, table.0, idx.as_ptr(), idx.len(), o) })
    }
    pub fn concat(&mut self, a: Var, b: Var, axis: i32) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_concat(t, a.0, b.0, axis, o) })
    }
    pub fn slice(&mut self, a: Var, axis: i32, start: i32, len: i32) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_slice(t, a.0, axis, start, len, o) })
    }
    pub fn reshape(&mut self, a: Var, rows: i32, cols: i32) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_reshape(t, a.0, rows, cols, o) })
    }
    pub fn transpose(&mut self, a: Var) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_transpose(t, a.0, o) })
    }
    /// x: N x (C*H*W); w: F x (C*k*k); bias: 1 x F.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(&mut self, x: Var, w: Var, bias: Option<Var>, channels: i32, height: i32, width: i32,
                  kernel: i32, stride: i32, pad: i32) -> Result<Var> {
        self.op(|t, o| unsafe {
            sys::mp_conv2d(t, x.0, w.0, opt(bias), channels, height, width, kernel, stride, pad, o)
        })
    }
    pub fn maxpool2d(&mut self, x: Var, channels: i32, height: i32, width: i32) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_maxpool2d(t, x.0, channels, height, width, o) })
    }
    pub fn batch_matmul(&mut self, a: Var, b: Var, batch: i32, trans_a: bool, trans_b: bool) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_batch_matmul(t, a.0, b.0, batch, trans_a as i32, trans_b as i32, o) })
    }
    pub fn split_heads(&mut self, x: Var, batch: i32, seq: i32, heads: i32) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_split_heads(t, x.0, batch, seq, heads, o) })
    }
    pub fn merge_heads(&mut self, x: Var, batch: i32, seq: i32, heads: i32) -> Result<Var> {
        self.op(|t, o| unsafe { sys::mp_merge_heads(t, x.0, batch, seq, heads, o) })
    }
}

impl std::fmt::Debug for Tape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tape({:p})", self.ptr)
    }
}

impl Drop for Tape {
    fn drop(&mut self) {
        unsafe { sys::mp_tape_destroy(self.ptr) }
    }
}

