/* cases.h — load ../shared/data/parser-cases.json for the parser tests.
 *
 * parser_cases_load() returns the parsed file (its "cases" list is what the
 * tests walk), or NULL after marking the current test skipped when the
 * shared folder is absent. */
#ifndef TEST_CASES_H
#define TEST_CASES_H

#include <stdio.h>
#include <stdlib.h>

#include "json.h"
#include "test.h"

static inline char *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (b = malloc((size_t)n + 1))) {
        if (fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
        else { b[n] = 0; *len = (size_t)n; }
    }
    fclose(f);
    return b;
}

static inline cJSON *parser_cases_load(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/data/parser-cases.json", test_shared_dir());
    size_t len;
    char *text = test_read_file(path, &len);
    if (!text) { test_skip("../shared/data/parser-cases.json not found"); return NULL; }
    cJSON *root = NULL;
    if (pl_json_parse(&root, text, len, NULL, 0)) { fprintf(stderr, "  %s: invalid JSON\n", path); t_cur_failed = 1; }
    free(text);
    return root;
}

#endif
