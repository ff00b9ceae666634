/*
 * daemonize: leave the terminal without lying about success. The parent
 * waits until the detached child reports ready or fails, and exits with the
 * child's code (printing its reason on failure); also the optional pidfile. Not used with -f.
 */
#ifndef ROLLUPD_DAEMONIZE_H
#define ROLLUPD_DAEMONIZE_H

/* Fork, setsid, chdir /, stdio to /dev/null. Returns 0 in the child (the
 * parent never returns), -1 if detaching failed. */
int daemonize_detach(void);

/* Tell the waiting parent: 0 once ready, or the exit code if the daemon ends
 * first, with `reason` (may be NULL), which the parent prints on stderr.
 * Only the first call counts; a no-op when not detached. */
void daemonize_report(int code, const char *reason);

/* Write the pid to `path`; 0 or -1 (errno set). */
int pidfile_write(const char *path);

#endif
