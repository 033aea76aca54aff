/* The smallest complete program: MAML on sinusoid regression (Finn et al.
 * 2017), then adaptation to a new sine wave from 10 points. */
#include <metaprompt.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(call) do { mp_status s_ = (call); if (s_ != MP_OK) { \
    fprintf(stderr, "%s: %s\n", #call, mp_last_error()); return 1; } } while (0)

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 2000;
    mp_config *cfg; mp_model *net; mp_prompt *prompt; mp_sampler *tasks; mp_meta *maml;
    CHECK(mp_config_create(&cfg));                       /* 1-40-40-1 ReLU net, no prompt */
    CHECK(mp_config_set_int(cfg, MP_CFG_MODEL_KIND, MP_MODEL_MLP));
    CHECK(mp_config_set_int(cfg, MP_CFG_MODEL_TASK, MP_TASK_REGRESSION));
    CHECK(mp_config_set_int(cfg, MP_CFG_MODEL_INIT, MP_INIT_TORCH));
    CHECK(mp_config_set_int(cfg, MP_CFG_DATA_SHOTS, 10));  /* K = 10 support points */
    CHECK(mp_config_set_int(cfg, MP_CFG_META_SCOPE, MP_SCOPE_ALL));
    CHECK(mp_config_set_float(cfg, MP_CFG_META_INNER_LR, 0.01));
    CHECK(mp_model_create(&net, cfg));
    CHECK(mp_prompt_create(&prompt, net));
    CHECK(mp_sampler_create_sinusoid(&tasks, cfg));
    CHECK(mp_meta_create(&maml, net, prompt, cfg));      /* MAML, Adam 1e-3 by default */
    mp_task *batch[25] = {0};
    for (int it = 0; it < iters; it++) {                 /* meta-batches of 25 tasks */
        for (int b = 0; b < 25; b++) {
            mp_task_destroy(batch[b]);
            CHECK(mp_sampler_next(tasks, &batch[b]));
        }
        double stats[MP_META_NUM_STATS];
        CHECK(mp_meta_step(maml, batch, 25, stats, MP_META_NUM_STATS));
        if ((it + 1) % (iters / 10 > 0 ? iters / 10 : 1) == 0)
            printf("iter %5d  query MSE before %.3f  after one step %.3f\n", it + 1,
                   stats[MP_META_STAT_LOSS_BEFORE], stats[MP_META_STAT_LOSS_AFTER]);
    }
    double mse, ci;                                      /* 600 new sine waves */
    CHECK(mp_meta_evaluate(maml, tasks, 1000000, 600, &mse, &ci));
    printf("test MSE after adaptation: %.3f +/- %.3f\n", mse, ci);
    for (int b = 0; b < 25; b++) mp_task_destroy(batch[b]);
    mp_meta_destroy(maml); mp_sampler_destroy(tasks); mp_prompt_destroy(prompt);
    mp_model_destroy(net); mp_config_destroy(cfg);
    return 0;
}
