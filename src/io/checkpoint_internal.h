/* Internal checkpoint interface: a generic named-tensor writer and reader
 * (format: docs/FORMAT.md), used by src/io/checkpoint.c for the model and
 * prompt and by src/meta for the meta-optimizer's state. Not installed.
 *
 * Names are ASCII, 1..MP__CKPT_NAME_MAX bytes, unique in a file. By
 * convention model tensors are "model/<tensor>", the prompt is "prompt",
 * meta-optimizer state is "meta/<anything>". Configuration entries are
 * (key, value) pairs of any registered MP_CFG_* key; the meta module may
 * add its own keys (300-399) with mp__ckpt_writer_add_config.
 *
 * Error handling: every function returning mp_status writes its message to
 * the thread-local last error only (mp__fail(NULL, ...)); callers copy it
 * into their handle with mp__fail_propagate. */
#ifndef MP_IO_CHECKPOINT_INTERNAL_H
#define MP_IO_CHECKPOINT_INTERNAL_H

#include "core/internal.h"

#define MP__CKPT_NAME_MAX 200

/* Tensor element types (pinned: stored in files). */
#define MP__CKPT_F32 1
#define MP__CKPT_F64 2
#define MP__CKPT_U64 3
#define MP__CKPT_I32 4

typedef struct mp__ckpt_writer mp__ckpt_writer;
typedef struct mp__ckpt_reader mp__ckpt_reader;

/* ---- writer: collects entries in memory, then writes the file atomically --- */
mp_status mp__ckpt_writer_create(mp__ckpt_writer **out);
void mp__ckpt_writer_destroy(mp__ckpt_writer *w);
/* Adds a rows x cols tensor (copied now; rows, cols >= 0). Errors:
 * MP_ERR_INVALID_ARGUMENT (bad or duplicate name, negative shape),
 * MP_ERR_OUT_OF_MEMORY. */
mp_status mp__ckpt_writer_add(mp__ckpt_writer *w, const char *name, int32_t rows, int32_t cols,
                              const float *data);
mp_status mp__ckpt_writer_add_f64(mp__ckpt_writer *w, const char *name, int32_t rows,
                                  int32_t cols, const double *data);
mp_status mp__ckpt_writer_add_i32(mp__ckpt_writer *w, const char *name, int32_t rows,
                                  int32_t cols, const int32_t *data);
mp_status mp__ckpt_writer_add_u64s(mp__ckpt_writer *w, const char *name, int32_t rows,
                                   int32_t cols, const uint64_t *data);
/* A single uint64 (a 1 x 1 U64 tensor): step counts, sampler positions. */
mp_status mp__ckpt_writer_add_u64(mp__ckpt_writer *w, const char *name, uint64_t value);
/* A configuration entry; the type comes from the key's registration
 * (ival for int keys, fval for float keys). A key added twice keeps the
 * last value. Errors: MP_ERR_NOT_FOUND (unregistered key). */
mp_status mp__ckpt_writer_add_config(mp__ckpt_writer *w, int32_t key, int64_t ival, double fval);
/* Serialises everything (header, config, tensors, CRC32) to path via a
 * temporary file and rename. Errors: MP_ERR_IO, MP_ERR_OUT_OF_MEMORY. */
mp_status mp__ckpt_writer_save(mp__ckpt_writer *w, const char *path);

/* ---- reader: loads and verifies a whole file, then answers lookups ---------- */
/* Reads path and verifies magic (MP_ERR_FORMAT), format version
 * (MP_ERR_VERSION), length (MP_ERR_FORMAT: truncated), CRC32
 * (MP_ERR_CHECKSUM) and every record's framing (MP_ERR_FORMAT). */
mp_status mp__ckpt_reader_open(mp__ckpt_reader **out, const char *path);
/* Same from a memory image (copied); used by the fuzz harness. */
mp_status mp__ckpt_reader_open_mem(mp__ckpt_reader **out, const void *data, size_t len);
void mp__ckpt_reader_close(mp__ckpt_reader *r);

/* Library version number that wrote the file. */
int32_t mp__ckpt_library_version(const mp__ckpt_reader *r);
/* Configuration entries: count, and entry i (key, MP_CFG_TYPE_*, value). */
size_t mp__ckpt_config_count(const mp__ckpt_reader *r);
void mp__ckpt_config_entry(const mp__ckpt_reader *r, size_t i, int32_t *key, int32_t *type,
                           int64_t *ival, double *fval);
/* Value of one configuration key; MP_ERR_NOT_FOUND if the file has none,
 * quietly (no message recorded: a successful load may ask for optional keys,
 * and mp_last_error() must then stay as it was; callers word the error). */
mp_status mp__ckpt_config(const mp__ckpt_reader *r, int32_t key, int64_t *ival, double *fval);

/* Tensors: count and the name of tensor i (valid while r is open). */
size_t mp__ckpt_num_tensors(const mp__ckpt_reader *r);
const char *mp__ckpt_tensor_name(const mp__ckpt_reader *r, size_t i);
/* 1 if the file holds a tensor of that name, else 0; records no message. */
int mp__ckpt_has(const mp__ckpt_reader *r, const char *name);
/* Looks a tensor up: its dtype (MP__CKPT_*) and shape. Any out pointer may
 * be NULL. Errors: MP_ERR_NOT_FOUND. */
mp_status mp__ckpt_find(const mp__ckpt_reader *r, const char *name, int32_t *dtype, int32_t *rows,
                        int32_t *cols);
/* Checks that a tensor exists with this dtype and exact shape (2x3 is not
 * 3x2). Errors: MP_ERR_NOT_FOUND, MP_ERR_FORMAT (dtype),
 * MP_ERR_SHAPE_MISMATCH (shape), each naming the tensor. */
mp_status mp__ckpt_expect(const mp__ckpt_reader *r, const char *name, int32_t dtype, int32_t rows,
                          int32_t cols);
/* Copies a tensor's values into dst (len must equal rows*cols; dtype must
 * match). Errors: MP_ERR_NOT_FOUND, MP_ERR_FORMAT (dtype),
 * MP_ERR_SHAPE_MISMATCH (len). */
mp_status mp__ckpt_read(const mp__ckpt_reader *r, const char *name, float *dst, size_t len);
mp_status mp__ckpt_read_f64(const mp__ckpt_reader *r, const char *name, double *dst, size_t len);
mp_status mp__ckpt_read_i32(const mp__ckpt_reader *r, const char *name, int32_t *dst, size_t len);
mp_status mp__ckpt_read_u64s(const mp__ckpt_reader *r, const char *name, uint64_t *dst,
                             size_t len);
mp_status mp__ckpt_read_u64(const mp__ckpt_reader *r, const char *name, uint64_t *value);
/* Index of the first value of the f32 tensor `name` for which ok(value,
 * ctx) returns 0 (that value in *value when value is not NULL), or SIZE_MAX
 * when every value passes or there is no such f32 tensor. Reads in place
 * (no allocation): semantic checks of stored state before it is applied. */
size_t mp__ckpt_first_f32_failing(const mp__ckpt_reader *r, const char *name,
                                  int (*ok)(float value, const void *ctx), const void *ctx,
                                  float *value);

/* Verifies an open checkpoint against model (and prompt, meta, sampler: may
 * be NULL) and, only if everything passes, copies the values in: the body
 * of mp_checkpoint_load_with_sampler, used directly by the fuzz harness. */
mp_status mp__checkpoint_load_reader(const mp__ckpt_reader *r, mp_model *model, mp_prompt *prompt,
                                     mp_meta *meta, mp_sampler *sampler);

/* Records of an episode sampler (written and checked by src/io/checkpoint.c;
 * under "meta/" so that files stay readable by the format's version 1
 * rules, and therefore accepted, not owned, by src/meta's check). */
#define MP__CKPT_SAMPLER_PREFIX   "meta/sampler_"
#define MP__CKPT_SAMPLER_POSITION "meta/sampler_position" /* u64 1 x 1 */
#define MP__CKPT_SAMPLER_IDENTITY "meta/sampler_identity" /* u64 1 x MP__SAMPLER_ID_COUNT */

/* ---- meta-optimizer hooks (implemented by src/meta) ------------------------------
 * The public savers and loaders first call owner when a meta is given.
 * mp_checkpoint_save calls write when a meta is given; mp_checkpoint_load
 * calls check (must verify everything it will need: presence, dtypes,
 * shapes, config compatibility, and reject unknown "meta/" tensors) and,
 * only after the model, prompt and meta checks all passed, apply (must not
 * fail: everything was checked). Implemented in src/meta/ckpt.c. */
mp_status mp__meta_ckpt_write(const mp_meta *meta, mp__ckpt_writer *w);
/* The handles given with a meta must be the ones it was created for (its
 * state is theirs): model == the meta's model and, when the meta updates a
 * prompt (P > 0), prompt == that prompt. MP_ERR_INVALID_ARGUMENT naming the
 * arguments, as fn's, recorded in herr (may be NULL) and mp_last_error(). */
/* MP_ERR_STATE while an evaluation of meta is running (a load from its
 * progress callback would change it mid-evaluation). */
mp_status mp__meta_ckpt_idle(const mp_meta *meta, char *herr, const char *fn);
mp_status mp__meta_ckpt_owner(const mp_meta *meta, char *herr, const char *fn, const mp_model *model,
                              const mp_prompt *prompt);
mp_status mp__meta_ckpt_check(const mp_meta *meta, const mp__ckpt_reader *r);
void mp__meta_ckpt_apply(mp_meta *meta, const mp__ckpt_reader *r);

#endif
