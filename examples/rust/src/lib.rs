//! Safe Rust bindings for libmetaprompt (prompt-tuned meta-learning in C).
//!
//! Thin RAII wrappers over a hand-written `extern "C"` block ([`sys`]): every
//! handle frees its C object on drop, every fallible call returns
//! `Result<T, Error>` carrying the status code and the library's message.
//!
//! Threads: the C handles are not thread-safe but distinct handles may be
//! used from distinct threads (core.h, tape.h), so handle types are `Send`
//! and not `Sync`.
//!
//! ```compile_fail
//! fn needs_sync<T: Sync>() {}
//! needs_sync::<metaprompt::Tape>(); // a tape may move between threads, not be shared
//! ```
//!
//! ```compile_fail
//! fn needs_sync<T: Sync>() {}
//! needs_sync::<metaprompt::Config>();
//! ```
use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::{c_char, c_void};
use std::sync::Mutex;

pub mod sys;
mod data;
mod meta;
mod model;
mod tape;

pub use data::*;
pub use meta::*;
pub use model::*;
pub use tape::*;

/// Status codes (core.h; pinned forever, append only).
pub mod status {
    pub const OK: i32 = 0;
    pub const ERR_INVALID_ARGUMENT: i32 = 1;
    pub const ERR_NULL_POINTER: i32 = 2;
    pub const ERR_OUT_OF_MEMORY: i32 = 3;
    pub const ERR_BUFFER_TOO_SMALL: i32 = 4;
    pub const ERR_SHAPE_MISMATCH: i32 = 5;
    pub const ERR_UNKNOWN_VARIABLE: i32 = 6;
    pub const ERR_IO: i32 = 7;
    pub const ERR_FORMAT: i32 = 8;
    pub const ERR_VERSION: i32 = 9;
    pub const ERR_CHECKSUM: i32 = 10;
    pub const ERR_NOT_FINITE: i32 = 11;
    pub const ERR_STATE: i32 = 12;
    pub const ERR_CANCELLED: i32 = 13;
    pub const ERR_NOT_FOUND: i32 = 14;
    pub const ERR_RANGE: i32 = 15;
    pub const ERR_UNSUPPORTED: i32 = 16;
    pub const ERR_INTERNAL: i32 = 17;
    pub(crate) const NAMES: [&str; 18] = [
        "MP_OK", "MP_ERR_INVALID_ARGUMENT", "MP_ERR_NULL_POINTER", "MP_ERR_OUT_OF_MEMORY",
        "MP_ERR_BUFFER_TOO_SMALL", "MP_ERR_SHAPE_MISMATCH", "MP_ERR_UNKNOWN_VARIABLE", "MP_ERR_IO",
        "MP_ERR_FORMAT", "MP_ERR_VERSION", "MP_ERR_CHECKSUM", "MP_ERR_NOT_FINITE", "MP_ERR_STATE",
        "MP_ERR_CANCELLED", "MP_ERR_NOT_FOUND", "MP_ERR_RANGE", "MP_ERR_UNSUPPORTED",
        "MP_ERR_INTERNAL",
    ];
}

/// Generic configuration keys (core.h).
pub const CFG_SEED: i32 = 1;
pub const CFG_THREADS: i32 = 2;
pub const CFG_TYPE_INT: i32 = 1;
pub const CFG_TYPE_FLOAT: i32 = 2;
pub const LOG_DEBUG: i32 = 0;
pub const LOG_INFO: i32 = 1;
pub const LOG_WARN: i32 = 2;
pub const LOG_ERROR: i32 = 3;

/// A failed call: the mp_status code and the library's message (which names
/// the function, the argument and the expected vs. received value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub status: i32,
    pub message: String,
}

impl Error {
    /// The status constant's name, e.g. "MP_ERR_RANGE".
    pub fn status_name(&self) -> &'static str {
        usize::try_from(self.status).ok().and_then(|i| status::NAMES.get(i)).copied().unwrap_or("MP_STATUS_UNKNOWN")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status_name(), self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn text(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: the library returns NUL-terminated static or handle-owned strings.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// Turns a status into a Result. The message is the calling thread's
/// mp_last_error(), which every failing call writes (const calls such as a
/// sampler's episode() write only that one, so a handle's own message could
/// be stale); the handle's message is the fallback.
pub(crate) fn check(st: i32, handle_msg: Option<String>) -> Result<()> {
    if st == status::OK {
        return Ok(());
    }
    let mut message = last_error();
    if message.is_empty() {
        message = handle_msg.unwrap_or_default();
    }
    if message.is_empty() {
        message = status_string(st);
    }
    Err(Error { status: st, message })
}

// ---- slice lengths -----------------------------------------------------------
// Some C functions take counts rather than buffer lengths (n rows of dim
// values, n labels: docs/ABI.md, "Departures") and read as many values as
// the counts imply. The wrappers derive those counts from one slice and
// check every other slice against them here, so that safe code cannot make
// the library read past the end of a slice. A mismatch is the library's own
// MP_ERR_SHAPE_MISMATCH with a message naming the wrapper, the argument, the
// expected and the received length.

fn len_error(func: &str, arg: &str, got: usize, expected: String) -> Error {
    Error {
        status: status::ERR_SHAPE_MISMATCH,
        message: format!("{}: argument '{}' has length {}, expected {}", func, arg, got, expected),
    }
}

/// Checks that `got == rows * width`; `how` says where rows and width come
/// from (e.g. "4 labels x dim 64").
pub(crate) fn check_len(func: &str, arg: &str, got: usize, rows: usize, width: usize, how: &str) -> Result<()> {
    match rows.checked_mul(width) {
        Some(want) if want == got => Ok(()),
        Some(want) => Err(len_error(func, arg, got, format!("{} ({})", want, how))),
        None => Err(len_error(func, arg, got, format!("{} x {} ({}), which overflows", rows, width, how))),
    }
}

/// Rows of a slice holding whole rows of `width` values (width >= 1):
/// `got / width`, or the shape-mismatch error when `got` is not a multiple.
pub(crate) fn rows_of(func: &str, arg: &str, got: usize, width: usize, how: &str) -> Result<usize> {
    if got % width == 0 {
        Ok(got / width)
    } else {
        Err(len_error(func, arg, got, format!("a multiple of {} ({})", width, how)))
    }
}

// ---- integer conversions --------------------------------------------------------
// Counts and sizes the library reports as i32/i64 become usize without `as`,
// which would wrap a negative value (-1 as usize is usize::MAX) and could
// then size a huge allocation; the library never reports one, but the
// conversion is checked rather than assumed.

/// v as usize, or MP_ERR_RANGE naming the function, the quantity and the value.
pub(crate) fn to_usize<T>(func: &str, what: &str, v: T) -> Result<usize>
where
    T: Copy + TryInto<usize> + fmt::Display,
{
    v.try_into().map_err(|_| Error {
        status: status::ERR_RANGE,
        message: format!("{}: {} is {}, not a valid size", func, what, v),
    })
}

/// rows * cols of a shape the library reported, checked (negative or
/// overflowing: MP_ERR_RANGE).
pub(crate) fn shape_len(func: &str, rows: i32, cols: i32) -> Result<usize> {
    let (r, c) = (to_usize(func, "rows", rows)?, to_usize(func, "cols", cols)?);
    r.checked_mul(c).ok_or_else(|| Error {
        status: status::ERR_RANGE,
        message: format!("{}: shape {} x {} overflows", func, rows, cols),
    })
}

/// A C string for a path or name (MP_ERR_INVALID_ARGUMENT for a NUL byte).
pub(crate) fn c_string(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error {
        status: status::ERR_INVALID_ARGUMENT,
        message: format!("{}: {:?} contains a NUL byte", what, s),
    })
}

pub fn version_number() -> i32 {
    unsafe { sys::mp_version_number() }
}
pub fn version_string() -> String {
    text(unsafe { sys::mp_version_string() })
}
pub fn status_string(st: i32) -> String {
    text(unsafe { sys::mp_status_string(st) })
}
/// The calling thread's last failure message ("" if none).
pub fn last_error() -> String {
    text(unsafe { sys::mp_last_error() })
}
pub fn clear_error() {
    unsafe { sys::mp_clear_error() }
}
/// Live allocations made through the library's allocator (leak checks).
pub fn live_allocations() -> i64 {
    unsafe { sys::mp_live_allocations() }
}
pub fn blas_config() -> String {
    text(unsafe { sys::mp_blas_config() })
}
/// OpenBLAS kernel core in use, e.g. "Haswell".
pub fn blas_corename() -> String {
    text(unsafe { sys::mp_blas_corename() })
}
pub fn blas_num_threads() -> i32 {
    unsafe { sys::mp_blas_num_threads() }
}
/// Where build.rs found the library at build time.
pub fn linked_from() -> &'static str {
    env!("MP_LINKED_FROM")
}

type LogFn = Box<dyn Fn(i32, &str) + Send + Sync>;
// The installed closure must outlive its installation; the library only
// sees a pointer to it.
static LOG_CALLBACK: Mutex<Option<Box<LogFn>>> = Mutex::new(None);

unsafe extern "C" fn log_trampoline(level: i32, msg: *const c_char, user: *mut c_void) {
    let f = &*(user as *const LogFn);
    let m = text(msg);
    // A panic must not unwind into C.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(level, &m)));
}

/// Installs a process-wide log callback (None silences). It may be called
/// from the library's worker threads, hence Send + Sync.
pub fn set_log_callback(f: Option<LogFn>, min_level: i32) -> Result<()> {
    let mut slot = LOG_CALLBACK.lock().unwrap_or_else(|e| e.into_inner());
    let boxed = f.map(Box::new);
    let (cb, user): (sys::mp_log_fn, *mut c_void) = match &boxed {
        Some(b) => (Some(log_trampoline), &**b as *const LogFn as *mut c_void),
        None => (None, std::ptr::null_mut()),
    };
    check(unsafe { sys::mp_set_log_callback(cb, min_level, user) }, None)?;
    *slot = boxed; // the old closure is dropped only after C stopped using it
    Ok(())
}

/// Name of a configuration key ("model.hidden_width"), None if unknown.
pub fn key_name(key: i32) -> Option<String> {
    let p = unsafe { sys::mp_config_key_name(key) };
    if p.is_null() {
        None
    } else {
        Some(text(p))
    }
}
/// CFG_TYPE_INT, CFG_TYPE_FLOAT, or 0 for an unknown key.
pub fn key_type(key: i32) -> i32 {
    unsafe { sys::mp_config_key_type(key) }
}
pub fn key_by_name(name: &str) -> Result<i32> {
    let c = c_string("key_by_name", name)?;
    let mut out = 0i32;
    check(unsafe { sys::mp_config_key_by_name(c.as_ptr(), &mut out) }, None)?;
    Ok(out)
}

/// A key/value configuration (mp_config).
pub struct Config {
    ptr: *mut sys::mp_config,
}

// SAFETY: distinct handles may be used from distinct threads (core.h); a
// Config is not shared (not Sync).
unsafe impl Send for Config {}

impl Config {
    pub fn new() -> Result<Config> {
        let mut p = std::ptr::null_mut();
        check(unsafe { sys::mp_config_create(&mut p) }, None)?;
        Ok(Config { ptr: p })
    }
    pub fn try_clone(&self) -> Result<Config> {
        let mut p = std::ptr::null_mut();
        check(unsafe { sys::mp_config_clone(&mut p, self.ptr) }, None)?;
        Ok(Config { ptr: p })
    }
    fn check(&self, st: i32) -> Result<()> {
        if st == status::OK {
            return Ok(());
        }
        check(st, Some(self.error()))
    }
    /// The message of the last failed call on this config.
    pub fn error(&self) -> String {
        text(unsafe { sys::mp_config_error(self.ptr) })
    }
    pub fn set_int(&mut self, key: i32, value: i64) -> Result<&mut Self> {
        self.check(unsafe { sys::mp_config_set_int(self.ptr, key, value) })?;
        Ok(self)
    }
    pub fn set_float(&mut self, key: i32, value: f64) -> Result<&mut Self> {
        self.check(unsafe { sys::mp_config_set_float(self.ptr, key, value) })?;
        Ok(self)
    }
    pub fn get_int(&self, key: i32) -> Result<i64> {
        let mut v = 0i64;
        self.check(unsafe { sys::mp_config_get_int(self.ptr, key, &mut v) })?;
        Ok(v)
    }
    pub fn get_float(&self, key: i32) -> Result<f64> {
        let mut v = 0f64;
        self.check(unsafe { sys::mp_config_get_float(self.ptr, key, &mut v) })?;
        Ok(v)
    }
    pub fn is_set(&self, key: i32) -> bool {
        unsafe { sys::mp_config_is_set(self.ptr, key) != 0 }
    }
    /// The raw handle (borrowed; valid while self lives).
    pub fn as_ptr(&self) -> *const sys::mp_config {
        self.ptr
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Config({:p})", self.ptr)
    }
}

impl Drop for Config {
    fn drop(&mut self) {
        unsafe { sys::mp_config_destroy(self.ptr) }
    }
}

/// Raw pointer of an optional configuration (None: library defaults).
pub(crate) fn cfg_ptr(cfg: Option<&Config>) -> *const sys::mp_config {
    cfg.map_or(std::ptr::null(), |c| c.ptr)
}

#[cfg(test)]
mod conversion_tests {
    use super::*;

    #[test]
    fn negative_sizes_are_refused_not_wrapped() {
        assert_eq!(to_usize("f", "dim", 7i64).unwrap(), 7);
        assert_eq!(to_usize("f", "dim", i32::MAX).unwrap(), i32::MAX as usize);
        let e = to_usize("Model::input_dim", "model.input_dim", -1i64).unwrap_err();
        assert_eq!(e.status, status::ERR_RANGE);
        assert_eq!(e.message, "Model::input_dim: model.input_dim is -1, not a valid size");
        // `as` would have given usize::MAX here.
        assert_eq!(-1i64 as usize, usize::MAX);
        assert_eq!(shape_len("Tape::read", 3, 4).unwrap(), 12);
        assert_eq!(shape_len("Tape::read", 0, 4).unwrap(), 0);
        assert_eq!(shape_len("Tape::read", -2, 4).unwrap_err().status, status::ERR_RANGE);
        assert_eq!(shape_len("Tape::read", 4, -2).unwrap_err().message, "Tape::read: cols is -2, not a valid size");
    }
}
