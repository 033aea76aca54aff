//! Raw declarations, written by hand from include/metaprompt/*.h (one per
//! MP_API function; tests/coverage.rs checks the list against the headers).
//! Handles are opaque: `*mut T` of the empty enums below.
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_void};

pub type mp_status = i32;
pub type mp_var = i32;

pub enum mp_config {}
pub enum mp_tape {}
pub enum mp_dataset {}
pub enum mp_task {}
pub enum mp_sampler {}
pub enum mp_model {}
pub enum mp_prompt {}
pub enum mp_meta {}

pub type mp_alloc_fn = Option<unsafe extern "C" fn(size: usize, user_data: *mut c_void) -> *mut c_void>;
pub type mp_free_fn = Option<unsafe extern "C" fn(ptr: *mut c_void, user_data: *mut c_void)>;
pub type mp_log_fn = Option<unsafe extern "C" fn(level: i32, msg: *const c_char, user_data: *mut c_void)>;
pub type mp_meta_progress_fn = Option<unsafe extern "C" fn(done: u64, total: u64, user_data: *mut c_void) -> i32>;

extern "C" {
    // ---- core.h
    pub fn mp_version_number() -> i32;
    pub fn mp_version_string() -> *const c_char;
    pub fn mp_status_string(status: mp_status) -> *const c_char;
    pub fn mp_last_error() -> *const c_char;
    pub fn mp_clear_error();
    pub fn mp_set_allocator(alloc: mp_alloc_fn, free_fn: mp_free_fn, user_data: *mut c_void) -> mp_status;
    pub fn mp_live_allocations() -> i64;
    pub fn mp_set_log_callback(f: mp_log_fn, min_level: i32, user_data: *mut c_void) -> mp_status;
    pub fn mp_blas_config() -> *const c_char;
    pub fn mp_blas_corename() -> *const c_char;
    pub fn mp_blas_num_threads() -> i32;
    pub fn mp_config_create(out: *mut *mut mp_config) -> mp_status;
    pub fn mp_config_destroy(cfg: *mut mp_config);
    pub fn mp_config_clone(out: *mut *mut mp_config, src: *const mp_config) -> mp_status;
    pub fn mp_config_set_int(cfg: *mut mp_config, key: i32, value: i64) -> mp_status;
    pub fn mp_config_set_float(cfg: *mut mp_config, key: i32, value: f64) -> mp_status;
    pub fn mp_config_get_int(cfg: *const mp_config, key: i32, out: *mut i64) -> mp_status;
    pub fn mp_config_get_float(cfg: *const mp_config, key: i32, out: *mut f64) -> mp_status;
    pub fn mp_config_is_set(cfg: *const mp_config, key: i32) -> i32;
    pub fn mp_config_key_name(key: i32) -> *const c_char;
    pub fn mp_config_key_type(key: i32) -> i32;
    pub fn mp_config_key_by_name(name: *const c_char, out_key: *mut i32) -> mp_status;
    pub fn mp_config_error(cfg: *const mp_config) -> *const c_char;

    // ---- tape.h
    pub fn mp_tape_create(out: *mut *mut mp_tape) -> mp_status;
    pub fn mp_tape_destroy(tape: *mut mp_tape);
    pub fn mp_tape_reset(tape: *mut mp_tape) -> mp_status;
    pub fn mp_tape_error(tape: *const mp_tape) -> *const c_char;
    pub fn mp_tape_stat(tape: *const mp_tape, stat: i32, out: *mut i64) -> mp_status;
    pub fn mp_tape_leaf(tape: *mut mp_tape, rows: i32, cols: i32, data: *const f32, len: usize,
                        flags: i32, out: *mut mp_var) -> mp_status;
    pub fn mp_tape_fill(tape: *mut mp_tape, rows: i32, cols: i32, value: f32, out: *mut mp_var) -> mp_status;
    pub fn mp_tape_shape(tape: *const mp_tape, v: mp_var, rows: *mut i32, cols: *mut i32) -> mp_status;
    pub fn mp_tape_read(tape: *const mp_tape, v: mp_var, buf: *mut f32, len: usize) -> mp_status;
    pub fn mp_tape_scalar(tape: *const mp_tape, v: mp_var, out: *mut f32) -> mp_status;
    pub fn mp_tape_backward(tape: *mut mp_tape, loss: mp_var, create_graph: i32) -> mp_status;
    pub fn mp_tape_backward_wrt(tape: *mut mp_tape, loss: mp_var, create_graph: i32, wrt: *const mp_var,
                                n: usize) -> mp_status;
    pub fn mp_tape_grad(tape: *mut mp_tape, v: mp_var, out: *mut mp_var) -> mp_status;
    pub fn mp_matmul(tape: *mut mp_tape, a: mp_var, b: mp_var, trans_a: i32, trans_b: i32, out: *mut mp_var) -> mp_status;
    pub fn mp_add(tape: *mut mp_tape, a: mp_var, b: mp_var, out: *mut mp_var) -> mp_status;
    pub fn mp_sub(tape: *mut mp_tape, a: mp_var, b: mp_var, out: *mut mp_var) -> mp_status;
    pub fn mp_mul(tape: *mut mp_tape, a: mp_var, b: mp_var, out: *mut mp_var) -> mp_status;
    pub fn mp_div(tape: *mut mp_tape, a: mp_var, b: mp_var, out: *mut mp_var) -> mp_status;
    pub fn mp_scale(tape: *mut mp_tape, a: mp_var, s: f32, out: *mut mp_var) -> mp_status;
    pub fn mp_add_scalar(tape: *mut mp_tape, a: mp_var, s: f32, out: *mut mp_var) -> mp_status;
    pub fn mp_sum(tape: *mut mp_tape, a: mp_var, reduce: i32, out: *mut mp_var) -> mp_status;
    pub fn mp_mean(tape: *mut mp_tape, a: mp_var, reduce: i32, out: *mut mp_var) -> mp_status;
    pub fn mp_relu(tape: *mut mp_tape, a: mp_var, out: *mut mp_var) -> mp_status;
    pub fn mp_tanh(tape: *mut mp_tape, a: mp_var, out: *mut mp_var) -> mp_status;
    pub fn mp_sigmoid(tape: *mut mp_tape, a: mp_var, out: *mut mp_var) -> mp_status;
    pub fn mp_gelu(tape: *mut mp_tape, a: mp_var, out: *mut mp_var) -> mp_status;
    pub fn mp_exp(tape: *mut mp_tape, a: mp_var, out: *mut mp_var) -> mp_status;
    pub fn mp_log(tape: *mut mp_tape, a: mp_var, out: *mut mp_var) -> mp_status;
    pub fn mp_sqrt(tape: *mut mp_tape, a: mp_var, out: *mut mp_var) -> mp_status;
    pub fn mp_square(tape: *mut mp_tape, a: mp_var, out: *mut mp_var) -> mp_status;
    pub fn mp_softmax(tape: *mut mp_tape, a: mp_var, out: *mut mp_var) -> mp_status;
    pub fn mp_log_softmax(tape: *mut mp_tape, a: mp_var, out: *mut mp_var) -> mp_status;
    pub fn mp_cross_entropy(tape: *mut mp_tape, logits: mp_var, labels: *const i32, n: usize,
                            out: *mut mp_var) -> mp_status;
    pub fn mp_mse(tape: *mut mp_tape, pred: mp_var, target: mp_var, out: *mut mp_var) -> mp_status;
    pub fn mp_layer_norm(tape: *mut mp_tape, x: mp_var, gamma: mp_var, beta: mp_var, eps: f32,
                         out: *mut mp_var) -> mp_status;
    pub fn mp_gather_rows(tape: *mut mp_tape, table: mp_var, idx: *const i32, n: usize,
                          out: *mut mp_var) -> mp_status;
    pub fn mp_concat(tape: *mut mp_tape, a: mp_var, b: mp_var, axis: i32, out: *mut mp_var) -> mp_status;
    pub fn mp_slice(tape: *mut mp_tape, a: mp_var, axis: i32, start: i32, len: i32, out: *mut mp_var) -> mp_status;
    pub fn mp_reshape(tape: *mut mp_tape, a: mp_var, rows: i32, cols: i32, out: *mut mp_var) -> mp_status;
    pub fn mp_transpose(tape: *mut mp_tape, a: mp_var, out: *mut mp_var) -> mp_status;
    pub fn mp_conv2d(tape: *mut mp_tape, x: mp_var, w: mp_var, bias: mp_var, channels: i32, height: i32,
                     width: i32, kernel: i32, stride: i32, pad: i32, out: *mut mp_var) -> mp_status;
    pub fn mp_maxpool2d(tape: *mut mp_tape, x: mp_var, channels: i32, height: i32, width: i32,
                        out: *mut mp_var) -> mp_status;
    pub fn mp_batch_matmul(tape: *mut mp_tape, a: mp_var, b: mp_var, batch: i32, trans_a: i32,
                           trans_b: i32, out: *mut mp_var) -> mp_status;
    pub fn mp_split_heads(tape: *mut mp_tape, x: mp_var, batch: i32, seq: i32, heads: i32,
                          out: *mut mp_var) -> mp_status;
    pub fn mp_merge_heads(tape: *mut mp_tape, x: mp_var, batch: i32, seq: i32, heads: i32,
                          out: *mut mp_var) -> mp_status;

    // ---- model.h
    pub fn mp_model_create(out: *mut *mut mp_model, cfg: *const mp_config) -> mp_status;
    pub fn mp_model_destroy(model: *mut mp_model);
    pub fn mp_model_error(model: *const mp_model) -> *const c_char;
    pub fn mp_model_clone(out: *mut *mut mp_model, src: *const mp_model) -> mp_status;
    pub fn mp_model_get_int(model: *const mp_model, key: i32, out: *mut i64) -> mp_status;
    pub fn mp_model_num_params(model: *const mp_model, out: *mut usize) -> mp_status;
    pub fn mp_model_get_params(model: *const mp_model, buf: *mut f32, len: usize) -> mp_status;
    pub fn mp_model_set_params(model: *mut mp_model, buf: *const f32, len: usize) -> mp_status;
    pub fn mp_model_prompt_shape(model: *const mp_model, rows: *mut i32, cols: *mut i32) -> mp_status;
    pub fn mp_model_predict(model: *const mp_model, prompt: *const mp_prompt, x: *const f32, n: usize,
                            x_len: usize, out: *mut f32, out_len: usize) -> mp_status;
    pub fn mp_model_loss(model: *const mp_model, prompt: *const mp_prompt, x: *const f32, n: usize,
                         x_len: usize, labels: *const i32, targets: *const f32, loss: *mut f32) -> mp_status;
    pub fn mp_prompt_create(out: *mut *mut mp_prompt, model: *const mp_model) -> mp_status;
    pub fn mp_prompt_destroy(prompt: *mut mp_prompt);
    pub fn mp_prompt_error(prompt: *const mp_prompt) -> *const c_char;
    pub fn mp_prompt_shape(prompt: *const mp_prompt, rows: *mut i32, cols: *mut i32) -> mp_status;
    pub fn mp_prompt_init(prompt: *mut mp_prompt, method: i32, scale: f64, seed: u64) -> mp_status;
    pub fn mp_prompt_init_from_data(prompt: *mut mp_prompt, model: *const mp_model, x: *const f32,
                                    n: usize, x_len: usize) -> mp_status;
    pub fn mp_prompt_get(prompt: *const mp_prompt, buf: *mut f32, len: usize) -> mp_status;
    pub fn mp_prompt_set(prompt: *mut mp_prompt, buf: *const f32, len: usize) -> mp_status;
    pub fn mp_prompt_copy(dst: *mut mp_prompt, src: *const mp_prompt) -> mp_status;
    pub fn mp_checkpoint_save(path: *const c_char, model: *const mp_model, prompt: *const mp_prompt,
                              meta: *const mp_meta) -> mp_status;
    pub fn mp_checkpoint_load(path: *const c_char, model: *mut mp_model, prompt: *mut mp_prompt,
                              meta: *mut mp_meta) -> mp_status;
    pub fn mp_checkpoint_save_with_sampler(path: *const c_char, model: *const mp_model,
                                           prompt: *const mp_prompt, meta: *const mp_meta,
                                           sampler: *const mp_sampler) -> mp_status;
    pub fn mp_checkpoint_load_with_sampler(path: *const c_char, model: *mut mp_model, prompt: *mut mp_prompt,
                                           meta: *mut mp_meta, sampler: *mut mp_sampler) -> mp_status;
    pub fn mp_model_create_from_checkpoint(out: *mut *mut mp_model, path: *const c_char) -> mp_status;

    // ---- data.h
    pub fn mp_dataset_from_arrays(out: *mut *mut mp_dataset, x: *const f32, n: usize, dim: i32,
                                  labels: *const i32, targets: *const f32, target_dim: i32) -> mp_status;
    pub fn mp_dataset_load_idx(out: *mut *mut mp_dataset, images_path: *const c_char,
                               labels_path: *const c_char, cfg: *const mp_config) -> mp_status;
    pub fn mp_dataset_load_csv(out: *mut *mut mp_dataset, path: *const c_char, cfg: *const mp_config) -> mp_status;
    pub fn mp_dataset_destroy(ds: *mut mp_dataset);
    pub fn mp_dataset_error(ds: *const mp_dataset) -> *const c_char;
    pub fn mp_dataset_size(ds: *const mp_dataset, out: *mut usize) -> mp_status;
    pub fn mp_dataset_dim(ds: *const mp_dataset, out: *mut i32) -> mp_status;
    pub fn mp_dataset_target_dim(ds: *const mp_dataset, out: *mut i32) -> mp_status;
    pub fn mp_dataset_num_classes(ds: *const mp_dataset, out: *mut i32) -> mp_status;
    pub fn mp_dataset_class_size(ds: *const mp_dataset, cls: i32, out: *mut usize) -> mp_status;
    pub fn mp_dataset_class_indices(ds: *const mp_dataset, cls: i32, indices: *mut usize, cap: usize, count: *mut usize) -> mp_status;
    pub fn mp_dataset_sample_shape(ds: *const mp_dataset, dims: *mut i32, cap: usize, ndims: *mut usize) -> mp_status;
    pub fn mp_dataset_set_sample_shape(ds: *mut mp_dataset, dims: *const i32, ndims: usize) -> mp_status;
    pub fn mp_dataset_get(ds: *const mp_dataset, i: usize, x: *mut f32, len: usize, label: *mut i32) -> mp_status;
    pub fn mp_dataset_get_target(ds: *const mp_dataset, i: usize, t: *mut f32, len: usize) -> mp_status;
    pub fn mp_dataset_select_classes(out: *mut *mut mp_dataset, src: *const mp_dataset, classes: *const i32,
                                     n: usize) -> mp_status;
    pub fn mp_task_create_classification(out: *mut *mut mp_task, dim: i32, n_way: i32, support_x: *const f32,
                                         support_labels: *const i32, n_support: usize, query_x: *const f32,
                                         query_labels: *const i32, n_query: usize) -> mp_status;
    pub fn mp_task_create_regression(out: *mut *mut mp_task, dim: i32, target_dim: i32, sx: *const f32,
                                     st: *const f32, ns: usize, qx: *const f32, qt: *const f32,
                                     nq: usize) -> mp_status;
    pub fn mp_task_destroy(task: *mut mp_task);
    pub fn mp_task_error(task: *const mp_task) -> *const c_char;
    pub fn mp_task_sizes(task: *const mp_task, n_support: *mut usize, n_query: *mut usize, dim: *mut i32,
                         n_way: *mut i32, target_dim: *mut i32) -> mp_status;
    pub fn mp_task_get_support(task: *const mp_task, x: *mut f32, x_len: usize, labels: *mut i32,
                               labels_len: usize, targets: *mut f32, targets_len: usize) -> mp_status;
    pub fn mp_task_get_query(task: *const mp_task, x: *mut f32, x_len: usize, labels: *mut i32,
                             labels_len: usize, targets: *mut f32, targets_len: usize) -> mp_status;
    pub fn mp_task_sinusoid(out: *mut *mut mp_task, seed: u64, index: u64, k_support: i32, k_query: i32) -> mp_status;
    pub fn mp_task_sinusoid_params(task: *const mp_task, amplitude: *mut f64, phase: *mut f64) -> mp_status;
    pub fn mp_sampler_create(out: *mut *mut mp_sampler, ds: *const mp_dataset, cfg: *const mp_config) -> mp_status;
    pub fn mp_sampler_create_sinusoid(out: *mut *mut mp_sampler, cfg: *const mp_config) -> mp_status;
    pub fn mp_sampler_destroy(s: *mut mp_sampler);
    pub fn mp_sampler_error(s: *const mp_sampler) -> *const c_char;
    pub fn mp_sampler_episode(s: *const mp_sampler, index: u64, out: *mut *mut mp_task) -> mp_status;
    pub fn mp_sampler_episode_into(s: *const mp_sampler, index: u64, task: *mut mp_task) -> mp_status;
    pub fn mp_sampler_next(s: *mut mp_sampler, out: *mut *mut mp_task) -> mp_status;
    pub fn mp_sampler_get_position(s: *const mp_sampler, out: *mut u64) -> mp_status;
    pub fn mp_sampler_set_position(s: *mut mp_sampler, position: u64) -> mp_status;
    pub fn mp_sampler_info(s: *const mp_sampler, ways: *mut i32, shots: *mut i32, queries: *mut i32,
                           dim: *mut i32) -> mp_status;

    // ---- meta.h
    pub fn mp_meta_create(out: *mut *mut mp_meta, model: *mut mp_model, prompt: *mut mp_prompt,
                          cfg: *const mp_config) -> mp_status;
    pub fn mp_meta_destroy(meta: *mut mp_meta);
    pub fn mp_meta_error(meta: *const mp_meta) -> *const c_char;
    pub fn mp_meta_step(meta: *mut mp_meta, tasks: *const *mut mp_task, n_tasks: usize, stats: *mut f64,
                        n_stats: usize) -> mp_status;
    pub fn mp_meta_compute_gradients(meta: *mut mp_meta, tasks: *const *mut mp_task, n_tasks: usize,
                                     stats: *mut f64, n_stats: usize) -> mp_status;
    pub fn mp_meta_gradient_size(meta: *const mp_meta, out: *mut usize) -> mp_status;
    pub fn mp_meta_get_gradients(meta: *const mp_meta, grad: *mut f32, len: usize) -> mp_status;
    pub fn mp_meta_set_gradients(meta: *mut mp_meta, grad: *const f32, len: usize) -> mp_status;
    pub fn mp_meta_apply_gradients(meta: *mut mp_meta) -> mp_status;
    pub fn mp_meta_step_count(meta: *const mp_meta, out: *mut i64) -> mp_status;
    pub fn mp_meta_adapt(meta: *const mp_meta, task: *const mp_task, out_prompt: *mut mp_prompt,
                         out_model: *mut mp_model) -> mp_status;
    pub fn mp_meta_evaluate(meta: *mut mp_meta, sampler: *const mp_sampler, first_episode: u64,
                            n_episodes: usize, mean: *mut f64, ci95: *mut f64) -> mp_status;
    pub fn mp_meta_evaluate_tasks(meta: *mut mp_meta, tasks: *const *mut mp_task, n_tasks: usize,
                                  mean: *mut f64, ci95: *mut f64) -> mp_status;
    pub fn mp_meta_set_progress(meta: *mut mp_meta, f: mp_meta_progress_fn, user_data: *mut c_void) -> mp_status;
    pub fn mp_meta_set_eval_steps(meta: *mut mp_meta, steps: i32) -> mp_status;
    pub fn mp_meta_inner_lr_count(meta: *const mp_meta, out: *mut usize) -> mp_status;
    pub fn mp_meta_get_inner_lr(meta: *const mp_meta, buf: *mut f32, len: usize) -> mp_status;
    pub fn mp_meta_get_int(meta: *const mp_meta, key: i32, out: *mut i64) -> mp_status;
    pub fn mp_meta_get_float(meta: *const mp_meta, key: i32, out: *mut f64) -> mp_status;
    pub fn mp_meta_set_int(meta: *mut mp_meta, key: i32, value: i64) -> mp_status;
    pub fn mp_meta_set_float(meta: *mut mp_meta, key: i32, value: f64) -> mp_status;
}
