/*
 * libmetaprompt — data: datasets, tasks and few-shot episode samplers.
 * Include metaprompt.h. The guide is docs/DATA.md.
 *
 *  - mp_dataset: n examples of dim floats each, with either integer class
 *    labels (classification, labels >= 0) or target vectors (regression).
 *    Built from caller arrays (copied), IDX files (plain or gzip) or CSV.
 *    Immutable after construction: every function taking a const dataset
 *    is thread-safe.
 *  - mp_task: one few-shot task, a support set and a query set (rows of dim
 *    floats with labels in [0, n_way) or targets of target_dim floats).
 *  - mp_sampler: draws N-way K-shot Q-query episodes from a dataset (or
 *    sinusoid regression tasks). Episode i is a pure function of (seed, i).
 *
 * Unless stated otherwise a failing call returns a non-zero mp_status,
 * records a message (mp_last_error(), and the handle's own mp_x_error()),
 * and leaves its handle and out-parameters unchanged. A handle of the wrong
 * kind gives MP_ERR_INVALID_ARGUMENT (destroy: nothing freed), as described
 * at the top of metaprompt/core.h.
 */
#ifndef METAPROMPT_DATA_H
#define METAPROMPT_DATA_H
#include "metaprompt/core.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_dataset mp_dataset;
typedef struct mp_task mp_task;
#ifndef MP_SAMPLER_TYPEDEF /* also declared by metaprompt/model.h */
#define MP_SAMPLER_TYPEDEF
typedef struct mp_sampler mp_sampler;
#endif

/* ---- configuration keys of the data module (200..299) --------------------- */
/* int 0/1, default 1: IDX unsigned-byte images are divided by 255 (values in
 * [0, 1]); 0 keeps the raw 0..255 values. Other element types are never scaled. */
#define MP_CFG_DATA_SCALE             200
/* int 0/1, default 0: the first line of a CSV file is a header and skipped. */
#define MP_CFG_DATA_CSV_HEADER        201
/* int, default -1 (the last column), -1..1000000: 0-based CSV column that
 * holds the label (or the regression target). */
#define MP_CFG_DATA_CSV_LABEL_COLUMN  202
/* int 0/1, default 0: 0 = the label column holds non-negative integer class
 * labels; 1 = it holds a float regression target (target_dim 1). */
#define MP_CFG_DATA_CSV_REGRESSION    203
/* int, default 5, 1..100000: classes per episode (N). */
#define MP_CFG_DATA_WAYS              210
/* int, default 1, 1..100000: support examples per class (K); for the
 * sinusoid sampler the number of support points. */
#define MP_CFG_DATA_SHOTS             211
/* int, default 15, 1..100000: query examples per class (Q); for the
 * sinusoid sampler the number of query points. */
#define MP_CFG_DATA_QUERIES           212
/* int 0/1, default 0: 1 shows each class of an episode at a random rotation
 * of 0, 90, 180 or 270 degrees (MAML's Omniglot convention: N distinct base
 * classes are drawn, then one rotation each, so a rotated class is a new
 * class across episodes but two rotations of one class never share an
 * episode); needs square samples. */
#define MP_CFG_DATA_ROTATIONS         213

/* Most dimensions a sample shape may have (IDX allows 255 in total). */
#define MP_DATA_MAX_DIMS 254

/* ---- datasets ---------------------------------------------------------------- */

/** Creates a dataset from caller arrays, which are copied (the caller keeps
 *  ownership and may free them right after).
 *  x: n*dim floats, row-major. Give exactly one of
 *   - labels: n non-negative class labels (classification), or
 *   - targets: n*target_dim floats (regression, target_dim >= 1);
 *  target_dim is ignored (give 0) for classification.
 *  The sample shape is [dim] (see mp_dataset_set_sample_shape).
 *  Errors: MP_ERR_NULL_POINTER (out, x, or both labels and targets NULL),
 *  MP_ERR_INVALID_ARGUMENT (n == 0, dim < 1, both labels and targets given,
 *  target_dim < 1 for regression), MP_ERR_RANGE (a negative label: index
 *  named), MP_ERR_NOT_FINITE (NaN/Inf in x or targets: index named),
 *  MP_ERR_OUT_OF_MEMORY. Thread-safe. */
MP_API mp_status mp_dataset_from_arrays(mp_dataset **out, const float *x, size_t n, int32_t dim,
                                        const int32_t *labels, const float *targets,
                                        int32_t target_dim);

/** Loads images and labels from two IDX files (the MNIST format), each plain
 *  or gzip-compressed (a file starting with the gzip magic 1f 8b; several
 *  concatenated gzip members are read as one stream).
 *  Element types: unsigned byte 0x08, signed byte 0x09, short 0x0B, int32
 *  0x0C, float32 0x0D (big-endian); 0x0E (double) is rejected. The images file
 *  has >= 1 dimensions: n x d1 x ... x dk; each example becomes a row of
 *  d1*...*dk floats, and [d1, ..., dk] is kept as the sample shape (a 1-D
 *  images file gives rows of one value). Unsigned-byte images are divided by
 *  255 when MP_CFG_DATA_SCALE is 1 (default). The labels file is 1-D with n
 *  integer-valued entries >= 0 (any element type; float32 labels must be
 *  whole numbers).
 *  cfg may be NULL (defaults); it is only read.
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_IO (a file cannot be opened or read:
 *  path and system error in the message), MP_ERR_FORMAT (bad magic, unknown
 *  element type, truncated or corrupt data or gzip stream, trailing bytes
 *  after the IDX data or after the last gzip member, labels file not 1-D), MP_ERR_INVALID_ARGUMENT (a zero dimension, a row
 *  larger than INT32_MAX values, a total size that overflows or exceeds
 *  2^40 bytes), MP_ERR_SHAPE_MISMATCH (label count != image count),
 *  MP_ERR_RANGE (a negative or non-integral label: index named),
 *  MP_ERR_NOT_FINITE (NaN/Inf in float32 images), MP_ERR_OUT_OF_MEMORY.
 *  Thread-safe. */
MP_API mp_status mp_dataset_load_idx(mp_dataset **out, const char *images_path,
                                     const char *labels_path, const mp_config *cfg);

/** Loads a numeric CSV file: one example per line, cells separated by
 *  commas (blanks around cells ignored, "\n" or "\r\n" line ends, blank
 *  lines skipped). Keys: MP_CFG_DATA_CSV_HEADER, MP_CFG_DATA_CSV_LABEL_COLUMN
 *  and MP_CFG_DATA_CSV_REGRESSION. Every other column is a feature
 *  (dim = columns - 1, at least 1). Numbers must be in decimal notation
 *  ([+-] digits [. digits] [e|E [+-] digits], e.g. 16, -0.5, .5, 1e-3),
 *  read with strtod in the "C" notation (the library never calls
 *  setlocale); hexadecimal ("0x10", "0x1p3") is refused. cfg may be NULL.
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_IO (path and system error),
 *  MP_ERR_FORMAT (a non-numeric, non-decimal or empty cell, a ragged row, fewer than 2
 *  columns, no data rows, a label column beyond the last column; line and
 *  column named, 1-based), MP_ERR_NOT_FINITE (a NaN or infinity spelling,
 *  or a value beyond float's range: line and column named), MP_ERR_RANGE (a class label that is negative, not whole
 *  or > INT32_MAX - 1), MP_ERR_OUT_OF_MEMORY. Thread-safe. */
MP_API mp_status mp_dataset_load_csv(mp_dataset **out, const char *path, const mp_config *cfg);

/** Destroys a dataset; NULL is ignored. No sampler may still borrow it. */
MP_API void mp_dataset_destroy(mp_dataset *ds);

/** Message of the last failed call on this dataset ("" if none; "" for NULL). */
MP_API const char *mp_dataset_error(const mp_dataset *ds);

/** Number of examples. Errors: MP_ERR_NULL_POINTER. Thread-safe. */
MP_API mp_status mp_dataset_size(const mp_dataset *ds, size_t *out);

/** Floats per example (the product of the sample shape).
 *  Errors: MP_ERR_NULL_POINTER. Thread-safe. */
MP_API mp_status mp_dataset_dim(const mp_dataset *ds, int32_t *out);

/** Floats per regression target; 0 for a classification dataset.
 *  Errors: MP_ERR_NULL_POINTER. Thread-safe. */
MP_API mp_status mp_dataset_target_dim(const mp_dataset *ds, int32_t *out);

/** Number of classes = largest label + 1 (class ids without examples, e.g.
 *  after mp_dataset_select_classes, are counted).
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_STATE (regression dataset). Thread-safe. */
MP_API mp_status mp_dataset_num_classes(const mp_dataset *ds, int32_t *out);

/** Number of examples with label cls (0 for an id in range without examples).
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_STATE (regression dataset),
 *  MP_ERR_RANGE (cls outside [0, num_classes)). Thread-safe. */
MP_API mp_status mp_dataset_class_size(const mp_dataset *ds, int32_t cls, size_t *out);

/** Indices of the examples with label cls, ascending (the dataset's order),
 *  for mp_dataset_get: writes up to cap of them into indices (may be NULL
 *  when cap is 0) and their number (mp_dataset_class_size) into *count.
 *  Call with cap 0 to query the count; a class id in range without examples
 *  gives count 0. Errors: MP_ERR_NULL_POINTER (ds, count, or indices with
 *  cap > 0), MP_ERR_STATE (regression dataset), MP_ERR_RANGE (cls outside
 *  [0, num_classes)), MP_ERR_BUFFER_TOO_SMALL (cap < count; *count is still
 *  set, nothing else written). Thread-safe. */
MP_API mp_status mp_dataset_class_indices(const mp_dataset *ds, int32_t cls, size_t *indices, size_t cap,
                                          size_t *count);

/** Sample shape: writes up to cap dimensions into dims (may be NULL when cap
 *  is 0) and their count into *ndims. Call with cap 0 to query the count.
 *  Errors: MP_ERR_NULL_POINTER (ds, ndims, or dims with cap > 0),
 *  MP_ERR_BUFFER_TOO_SMALL (cap < count; *ndims is still set to the count).
 *  Thread-safe. */
MP_API mp_status mp_dataset_sample_shape(const mp_dataset *ds, int32_t *dims, size_t cap,
                                         size_t *ndims);

/** Sets the sample shape (e.g. {28, 28} or {1, 28, 28}) of a dataset; the
 *  product must equal dim. Rotations need the last two dimensions equal.
 *  Not thread-safe: do not call while other threads or samplers use ds.
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_INVALID_ARGUMENT (ndims 0 or >
 *  MP_DATA_MAX_DIMS, a dimension < 1), MP_ERR_SHAPE_MISMATCH (product != dim). */
MP_API mp_status mp_dataset_set_sample_shape(mp_dataset *ds, const int32_t *dims, size_t ndims);

/** Copies example i into x (len >= dim floats) and, when label is not NULL,
 *  its class label. Errors: MP_ERR_NULL_POINTER (ds, x), MP_ERR_RANGE
 *  (i >= size), MP_ERR_BUFFER_TOO_SMALL (len < dim; needed size named),
 *  MP_ERR_STATE (label requested from a regression dataset). Thread-safe. */
MP_API mp_status mp_dataset_get(const mp_dataset *ds, size_t i, float *x, size_t len,
                                int32_t *label);

/** Copies the regression target of example i (len >= target_dim floats).
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_RANGE, MP_ERR_BUFFER_TOO_SMALL,
 *  MP_ERR_STATE (classification dataset). Thread-safe. */
MP_API mp_status mp_dataset_get_target(const mp_dataset *ds, size_t i, float *t, size_t len);

/** Creates a new dataset holding only the examples of the n listed classes,
 *  in their original order and with their original label ids (so num_classes
 *  of the result is max(classes) + 1). Use it to split classes into
 *  meta-train / meta-validation / meta-test sets. The sample shape is kept.
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_INVALID_ARGUMENT (n == 0, a duplicate
 *  class: named), MP_ERR_STATE (regression dataset), MP_ERR_RANGE (a class
 *  outside [0, num_classes) or without examples: named),
 *  MP_ERR_OUT_OF_MEMORY. Thread-safe with respect to src. */
MP_API mp_status mp_dataset_select_classes(mp_dataset **out, const mp_dataset *src,
                                           const int32_t *classes, size_t n);

/* ---- tasks ------------------------------------------------------------------- */

/** Creates a classification task (arrays copied). support_x: n_support*dim,
 *  query_x: n_query*dim floats; labels in [0, n_way).
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_INVALID_ARGUMENT (dim < 1, n_way < 1,
 *  n_support == 0 or n_query == 0, or sizes whose byte count overflows
 *  size_t), MP_ERR_RANGE (a label outside
 *  [0, n_way): set and index named), MP_ERR_NOT_FINITE (NaN/Inf in x),
 *  MP_ERR_OUT_OF_MEMORY. Thread-safe. */
MP_API mp_status mp_task_create_classification(mp_task **out, int32_t dim, int32_t n_way,
                                               const float *support_x,
                                               const int32_t *support_labels, size_t n_support,
                                               const float *query_x,
                                               const int32_t *query_labels, size_t n_query);

/** Creates a regression task (arrays copied): sx ns*dim, st ns*target_dim,
 *  qx nq*dim, qt nq*target_dim floats.
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_INVALID_ARGUMENT (dim < 1,
 *  target_dim < 1, ns == 0 or nq == 0, or sizes whose byte count overflows
 *  size_t), MP_ERR_NOT_FINITE,
 *  MP_ERR_OUT_OF_MEMORY. Thread-safe. */
MP_API mp_status mp_task_create_regression(mp_task **out, int32_t dim, int32_t target_dim,
                                           const float *sx, const float *st, size_t ns,
                                           const float *qx, const float *qt, size_t nq);

/** Destroys a task; NULL is ignored. */
MP_API void mp_task_destroy(mp_task *task);

/** Message of the last failed call on this task ("" if none; "" for NULL). */
MP_API const char *mp_task_error(const mp_task *task);

/** Sizes of a task; every out pointer may be NULL (not written). n_way is 0
 *  for regression tasks, target_dim 0 for classification tasks.
 *  Errors: MP_ERR_NULL_POINTER (task). Thread-safe. */
MP_API mp_status mp_task_sizes(const mp_task *task, size_t *n_support, size_t *n_query,
                               int32_t *dim, int32_t *n_way, int32_t *target_dim);

/** Copies the support set into caller buffers; each output may be NULL (not
 *  wanted). x: n_support*dim floats, labels: n_support (classification
 *  only), targets: n_support*target_dim (regression only). All lengths are
 *  checked before anything is written.
 *  Errors: MP_ERR_NULL_POINTER (task), MP_ERR_BUFFER_TOO_SMALL (needed size
 *  named), MP_ERR_STATE (labels from a regression task or targets from a
 *  classification task). Thread-safe. */
MP_API mp_status mp_task_get_support(const mp_task *task, float *x, size_t x_len,
                                     int32_t *labels, size_t labels_len, float *targets,
                                     size_t targets_len);

/** Same as mp_task_get_support for the query set (x: n_query*dim floats,
 *  labels: n_query, targets: n_query*target_dim).
 *  Errors: as mp_task_get_support. Thread-safe. */
MP_API mp_status mp_task_get_query(const mp_task *task, float *x, size_t x_len,
                                   int32_t *labels, size_t labels_len, float *targets,
                                   size_t targets_len);

/** Creates sinusoid regression task number index of the family of the MAML
 *  paper: amplitude A ~ U[0.1, 5], phase p ~ U[0, pi], inputs x ~ U[-5, 5],
 *  targets y = A sin(x - p); dim = target_dim = 1, k_support support and
 *  k_query query points. A pure function of (seed, index).
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_INVALID_ARGUMENT (k_support < 1 or
 *  k_query < 1), MP_ERR_OUT_OF_MEMORY. Thread-safe. */
MP_API mp_status mp_task_sinusoid(mp_task **out, uint64_t seed, uint64_t index,
                                  int32_t k_support, int32_t k_query);

/** Amplitude and phase (radians) of a sinusoid task; either out may be NULL.
 *  Errors: MP_ERR_NULL_POINTER (task), MP_ERR_STATE (not a sinusoid task).
 *  Thread-safe. */
MP_API mp_status mp_task_sinusoid_params(const mp_task *task, double *amplitude, double *phase);

/* ---- samplers ------------------------------------------------------------------ */
/*
 * An N-way K-shot Q-query episode from a classification dataset holds
 * exactly N distinct classes drawn uniformly from the classes with examples
 * (with rotations, then one uniform rotation per class), exactly K support and Q
 * query examples of each class drawn without replacement (no example is in
 * both sets), episode labels 0..N-1 given by a fresh uniformly random
 * permutation, and support and query rows each in shuffled order.
 * Episode i is a pure function of (MP_CFG_SEED, i, the dataset, N, K, Q,
 * rotations): the same on every call and in every thread.
 */

/** Creates an episode sampler over a classification dataset. ds is
 *  borrowed: it must outlive the sampler and not be modified. Keys:
 *  MP_CFG_DATA_WAYS, MP_CFG_DATA_SHOTS, MP_CFG_DATA_QUERIES,
 *  MP_CFG_DATA_ROTATIONS, MP_CFG_SEED; cfg may be NULL (defaults).
 *  The position starts at 0.
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_STATE (regression dataset),
 *  MP_ERR_RANGE (N larger than the classes with examples, rotations or not;
 *  a class with fewer
 *  than K+Q examples: named), MP_ERR_SHAPE_MISMATCH (rotations on samples
 *  that are not square: the shape's last two dimensions differ or it has
 *  fewer than two), MP_ERR_OUT_OF_MEMORY. Thread-safe with respect to ds. */
MP_API mp_status mp_sampler_create(mp_sampler **out, const mp_dataset *ds, const mp_config *cfg);

/** Creates a sampler of sinusoid regression tasks: episode i is
 *  mp_task_sinusoid(seed, i, SHOTS, QUERIES). Keys: MP_CFG_DATA_SHOTS,
 *  MP_CFG_DATA_QUERIES, MP_CFG_SEED (WAYS is ignored: info reports 0 ways).
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_OUT_OF_MEMORY. */
MP_API mp_status mp_sampler_create_sinusoid(mp_sampler **out, const mp_config *cfg);

/** Destroys a sampler (not its dataset); NULL is ignored. */
MP_API void mp_sampler_destroy(mp_sampler *s);

/** Message of the last failed call on this sampler ("" if none; "" for NULL).
 *  Const calls that fail write only the thread-local message
 *  (mp_last_error()), so that they stay safe to call from many threads. */
MP_API const char *mp_sampler_error(const mp_sampler *s);

/** Episode number index as a new task (the caller destroys it).
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_OUT_OF_MEMORY. Thread-safe (the
 *  sampler is not modified). */
MP_API mp_status mp_sampler_episode(const mp_sampler *s, uint64_t index, mp_task **out);

/** Writes episode number index into an existing task. A task made by the
 *  same sampler (or any task of the same kind and sizes) is reused without
 *  any allocation; otherwise its buffers are replaced (on failure the task
 *  is unchanged). Errors: MP_ERR_NULL_POINTER, MP_ERR_OUT_OF_MEMORY.
 *  Thread-safe with respect to the sampler; the task must not be used by
 *  another thread at the same time. */
MP_API mp_status mp_sampler_episode_into(const mp_sampler *s, uint64_t index, mp_task *task);

/** Episode at the current position as a new task, then advances the
 *  position by one. Errors: MP_ERR_NULL_POINTER, MP_ERR_OUT_OF_MEMORY (the
 *  position is then not advanced), MP_ERR_RANGE (the position is 2^64 - 1:
 *  it cannot advance; nothing is created). Not thread-safe (mutates the
 *  sampler). */
MP_API mp_status mp_sampler_next(mp_sampler *s, mp_task **out);

/** Current position (the index the next mp_sampler_next uses; saved and
 *  restored, with the sampler's identity, by mp_checkpoint_save_with_sampler
 *  and mp_checkpoint_load_with_sampler). Errors: MP_ERR_NULL_POINTER (s,
 *  out; the message goes to mp_last_error() only). Thread-safe: a plain
 *  read, like mp_sampler_episode; it must not overlap mp_sampler_next or
 *  mp_sampler_set_position on the same sampler. */
MP_API mp_status mp_sampler_get_position(const mp_sampler *s, uint64_t *out);

/** Sets the position. Errors: MP_ERR_NULL_POINTER. Not thread-safe. */
MP_API mp_status mp_sampler_set_position(mp_sampler *s, uint64_t position);

/** Episode shape: ways (N; 0 for the sinusoid sampler), shots (K),
 *  queries (Q) and dim (features per example); each out may be NULL.
 *  Errors: MP_ERR_NULL_POINTER (s). Thread-safe. */
MP_API mp_status mp_sampler_info(const mp_sampler *s, int32_t *ways, int32_t *shots,
                                 int32_t *queries, int32_t *dim);

#ifdef __cplusplus
}
#endif
#endif
