/* Built against an installed copy by `make installcheck` (pkg-config only). */
#include <metaprompt.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    if (mp_version_number() != MP_VERSION_NUMBER || strcmp(mp_version_string(), MP_VERSION_STRING) != 0) {
        fprintf(stderr, "header %s but library %s\n", MP_VERSION_STRING, mp_version_string());
        return 1;
    }
    mp_config *cfg = NULL;
    mp_status st = mp_config_create(&cfg);
    if (st != MP_OK) {
        fprintf(stderr, "mp_config_create: %s: %s\n", mp_status_string(st), mp_last_error());
        return 1;
    }
    st = mp_config_set_int(cfg, MP_CFG_THREADS, 2);
    mp_config_destroy(cfg);
    if (st != MP_OK) return 1;
    printf("libmetaprompt %s OK (OpenBLAS core %s)\n", mp_version_string(), mp_blas_corename());
    return 0;
}
