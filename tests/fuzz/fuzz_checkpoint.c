/* libFuzzer harness: a checkpoint image parsed from memory, every record
 * read back, then verified and loaded into a small prompted MLP and a
 * sinusoid sampler, as mp_checkpoint_load_with_sampler does after reading
 * a file. Each input is tried twice:
 * as is, and with its length field and CRC32 repaired, so mutations reach
 * the parser and the checks behind the checksum. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "io/checkpoint_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void read_everything(const mp__ckpt_reader *r)
{
    for (size_t i = 0; i < mp__ckpt_config_count(r); i++) {
        int32_t key, type;
        int64_t iv;
        double fv;
        mp__ckpt_config_entry(r, i, &key, &type, &iv, &fv);
    }
    for (size_t i = 0; i < mp__ckpt_num_tensors(r); i++) {
        const char *name = mp__ckpt_tensor_name(r, i);
        int32_t dtype, rows, cols;
        if (mp__ckpt_find(r, name, &dtype, &rows, &cols) != MP_OK) abort();
        size_t n = (size_t)rows * (size_t)cols;
        if (n > ((size_t)1 << 24)) continue;
        void *buf = malloc(n * 8 + 8);
        if (!buf) continue;
        switch (dtype) {
        case MP__CKPT_F32: mp__ckpt_read(r, name, buf, n); break;
        case MP__CKPT_F64: mp__ckpt_read_f64(r, name, buf, n); break;
        case MP__CKPT_I32: mp__ckpt_read_i32(r, name, buf, n); break;
        default: mp__ckpt_read_u64s(r, name, buf, n); break;
        }
        free(buf);
    }
}

static void try_load(const mp__ckpt_reader *r)
{
    mp_config *cfg;
    if (mp_config_create(&cfg) != MP_OK) return;
    mp_config_set_int(cfg, MP_CFG_MODEL_INPUT_DIM, 2);
    mp_config_set_int(cfg, MP_CFG_MODEL_HIDDEN_LAYERS, 1);
    mp_config_set_int(cfg, MP_CFG_MODEL_HIDDEN_WIDTH, 3);
    mp_config_set_int(cfg, MP_CFG_MODEL_PROMPT_LEN, 1);
    mp_model *m = NULL;
    mp_prompt *p = NULL;
    mp_sampler *s = NULL;
    if (mp_model_create(&m, cfg) == MP_OK && mp_prompt_create(&p, m) == MP_OK &&
        mp_sampler_create_sinusoid(&s, NULL) == MP_OK)
        mp__checkpoint_load_reader(r, m, p, NULL, s);
    mp_sampler_destroy(s);
    mp_prompt_destroy(p);
    mp_model_destroy(m);
    mp_config_destroy(cfg);
}

static void one(const uint8_t *data, size_t size)
{
    mp__ckpt_reader *r;
    if (mp__ckpt_reader_open_mem(&r, data, size) != MP_OK) return;
    read_everything(r);
    try_load(r);
    mp__ckpt_reader_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    one(data, size);
    if (size < 36 || size > ((size_t)1 << 24)) return 0;
    uint8_t *fixed = malloc(size);
    if (!fixed) return 0;
    memcpy(fixed, data, size);
    for (int i = 0; i < 8; i++) fixed[16 + i] = (uint8_t)((uint64_t)size >> (8 * i));
    uint32_t crc = (uint32_t)crc32(0L, fixed, (uInt)(size - 4));
    for (int i = 0; i < 4; i++) fixed[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    one(fixed, size);
    free(fixed);
    return 0;
}
