/*
 * sqlname: what may go into SQL text. Names that come from the catalog or
 * the config are checked and quoted here before they are put into a
 * statement; keys never are (they travel as parameters, as array literals
 * built here).
 */
#ifndef ROLLUPD_SQLNAME_H
#define ROLLUPD_SQLNAME_H

#include <stdbool.h>
#include <stddef.h>

#include "payload.h"

/* [a-z_][a-z0-9_]* with an optional "schema." prefix of the same form, each
 * part at most 63 bytes. */
bool sql_name_valid(const char *name);
/* A valid name of one part (no schema). */
bool sql_ident_valid(const char *name);
/* The quoted form ("schema"."name") into `out`; -1 when invalid or too long. */
int sql_name_quote(const char *name, char *out, size_t outlen);

/* An array literal ({1,2} or {"a","b"}) for a keys parameter. Caller frees. */
char *sql_array_literal(char *const *keys, size_t n, enum key_type type);

#endif
