/*
 * refresh: a batch of a channel's keys as a worker's statement, through
 * rollupd.refresh_keys() (which isolates poison keys), and its outcome: the
 * log line, the duration histogram, the poison keys found, and the batch
 * given back to its batcher. Shared by the sources that batch keys in
 * memory (notify, wal).
 */
#ifndef ROLLUPD_REFRESH_H
#define ROLLUPD_REFRESH_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "batcher.h"
#include "source.h"

/* Fill `job` to refresh `batch` ($1: the keys); `done` completes it. */
void refresh_job_fill(struct job *job, struct batch *batch, void *owner,
                      void (*done)(struct job *job, const PGresult *res, const char *error, ev_tstamp now));

/* The outcome of a refresh job of `b`: logged, counted, and the batch
 * completed (freed). True when the keys were refreshed. */
bool refresh_job_finish(struct batcher *b, const struct source_env *env, struct job *job, const PGresult *res,
                        const char *error, ev_tstamp now);

#endif
