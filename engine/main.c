/* glm-engine — for now: load a checkpoint and report it (the serving loop
 * of issue 4 replaces this file's body). */
#include <stdio.h>
#include <string.h>

#include "loader.h"
#include "pl.h"

int main(int argc, char **argv)
{
    pl_log_init("glm-engine");
    const char *dir = NULL;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--model") && i + 1 < argc) dir = argv[++i];
    if (!dir) { fputs("usage: glm-engine --model DIR\n", stderr); return 2; }
    eng_config cfg;
    eng_weights *w;
    char err[512];
    eng_load_opts lo = { .prefault = 1 };
    if (eng_weights_load(dir, &lo, &cfg, &w, err, sizeof err)) {
        fprintf(stderr, "glm-engine: %s\n", err);
        return 1;
    }
    printf("%s: %d layers%s, %.3f GB of weights\n", dir, cfg.num_hidden_layers,
           cfg.has_mtp_weights ? " + MTP" : "", eng_weights_bytes(w) / 1e9);
    eng_weights_free(w);
    return 0;
}
