/* libFuzzer harness: CSV parsing from memory (not NUL-terminated) under
 * every option combination chosen by the first input byte. */
#include <stddef.h>
#include <stdint.h>

#include "data/data_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    mp__csv_opts o = {data[0] & 1, (int32_t)((data[0] >> 1) & 7) - 1, (data[0] >> 4) & 1};
    mp__csv_result r;
    if (mp__csv_parse((const char *)data + 1, size - 1, &o, &r, "fuzz") == MP_OK) {
        mp_dataset *ds = NULL;
        /* the dataset builder takes ownership of the arrays */
        if (mp__dataset_adopt(&ds, "fuzz", r.x, r.n, r.dim, r.labels, r.targets, 1, 0) == MP_OK)
            mp_dataset_destroy(ds);
    }
    return 0;
}
