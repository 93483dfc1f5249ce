/* cases.h — load ../shared/data/parser-cases.json for the parser tests.
 *
 * parser_cases_load() returns the parsed file (its "cases" list is what the
 * tests walk), or NULL after marking the current test skipped when the
 * shared folder is absent. */
#ifndef TEST_CASES_H
#define TEST_CASES_H

#include <stdio.h>

#include "json.h"
#include "test.h"

static inline cJSON *parser_cases_load(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/data/parser-cases.json", test_shared_dir());
    pl_buf text;
    pl_buf_init(&text);
    cJSON *root = NULL;
    if (pl_file_read(path, &text, 64u << 20, NULL, 0)) test_skip("../shared/data/parser-cases.json not found");
    else if (pl_json_parse(&root, text.data, text.len, NULL, 0)) { fprintf(stderr, "  %s: invalid JSON\n", path); t_cur_failed = 1; }
    pl_buf_free(&text);
    return root;
}

#endif
