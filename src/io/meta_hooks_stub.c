/* Stand-ins for the meta-optimizer checkpoint hooks until src/meta defines
 * them (see io/checkpoint_internal.h). Delete this file in the commit that
 * adds the real mp__meta_ckpt_* functions. */
#include "io/checkpoint_internal.h"

mp_status mp__meta_ckpt_write(const mp_meta *meta, mp__ckpt_writer *w)
{
    (void)meta;
    (void)w;
    return mp__fail(NULL, MP_ERR_UNSUPPORTED,
                    "mp_checkpoint: this build cannot save meta-optimizer state");
}

mp_status mp__meta_ckpt_check(const mp_meta *meta, const mp__ckpt_reader *r)
{
    (void)meta;
    (void)r;
    return mp__fail(NULL, MP_ERR_UNSUPPORTED,
                    "mp_checkpoint: this build cannot load meta-optimizer state");
}

void mp__meta_ckpt_apply(mp_meta *meta, const mp__ckpt_reader *r)
{
    (void)meta;
    (void)r;
}
