/* libFuzzer harness: IDX parsing from memory, then every element read, as
 * mp_dataset_load_idx does after reading a file. */
#include <stddef.h>
#include <stdint.h>

#include "data/data_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mp__idx h;
    if (mp__idx_header(data, size, &h, "fuzz") != MP_OK) return 0;
    if (mp__idx_parse(data, size, &h, "fuzz") != MP_OK) return 0;
    double sum = 0;
    for (size_t i = 0; i < h.count; i++) sum += mp__idx_value(&h, h.data, i);
    return sum != sum ? 0 : 0; /* keep the loop alive */
}
