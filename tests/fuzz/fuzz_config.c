/* fuzz_config.c - the whole config loader on arbitrary bytes.
 *
 * Input: the config text itself (any bytes, NULs included, not NUL-terminated, so
 * ASan sees any read past len). Beyond "no crash, no leak, no UB" it checks the
 * loader's contract from config.h:
 *   - success: rc == 0, a config, no diagnostics, at least one lane, a router over
 *     the routes, and both printers (`sluice check`, `check --print`) run;
 *   - failure: rc < 0, no config, and at least one diagnostic line, each non-empty
 *     and starting with the name passed in ("fuzz.yaml:" or "fuzz.yaml: ").
 * Secrets: when mqtt.password is set, `check --print` shows it as "<redacted>" (the
 * integration test test_tls.py checks that a planted password never appears). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config.h"

#include "fuzz_check.h"

#define NAME "fuzz.yaml"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Runs a printer into memory; returns owned text (free) or NULL. */
static char *
print_to_string(void (*print)(const struct config *, FILE *), const struct config *cfg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    if (f == NULL)
        return NULL;
    print(cfg, f);
    fclose(f);
    return text;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config_diags diags = { 0 };
    struct config *cfg = (struct config *)0x1;   /* must be overwritten */
    char *text;
    int rc;

    rc = config_load_string(&cfg, NAME, (const char *)data, size, &diags);
    if (rc == 0) {
        CHECK(cfg != NULL);
        CHECK(diags.n == 0);
        CHECK(cfg->nlanes >= 1 && cfg->default_lane < cfg->nlanes);
        CHECK(cfg->nroutes == 0 || cfg->router != NULL);
        CHECK(cfg->dead_letter_topic != NULL && cfg->mqtt.url != NULL);
        for (size_t i = 0; i < cfg->nroutes; i++)
            CHECK(cfg->routes[i].lane < cfg->nlanes && cfg->routes[i].codec != NULL);
        free(print_to_string(config_print_summary, cfg));
        text = print_to_string(config_print_effective, cfg);
        CHECK(text != NULL);
        if (cfg->mqtt.password != NULL)
            CHECK(strstr(text, "password: \"<redacted>\"") != NULL);
        free(text);
        config_destroy(cfg);
    } else {
        CHECK(rc < 0);
        CHECK(cfg == NULL);
        CHECK(diags.n >= 1);
        for (size_t i = 0; i < diags.n; i++) {
            CHECK(diags.lines[i] != NULL && diags.lines[i][0] != '\0');
            CHECK(strncmp(diags.lines[i], NAME ":", sizeof(NAME)) == 0);
        }
    }
    config_diags_fini(&diags);
    return 0;
}

#include "fuzz_replay.h"
