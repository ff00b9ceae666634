/*
 * sdnotify: systemd's readiness protocol (a datagram to $NOTIFY_SOCKET),
 * implemented directly so rollupd needs no libsystemd. A no-op when the
 * variable is unset, so it costs nothing outside systemd.
 */
#ifndef ROLLUPD_SDNOTIFY_H
#define ROLLUPD_SDNOTIFY_H

/* Send "READY=1", "RELOADING=1", "STOPPING=1", "STATUS=..." etc.
 * Returns 1 sent, 0 no socket configured, -1 on error (logged). */
int sdnotify_send(const char *state);

/* The interval at which to send "WATCHDOG=1" (half of $WATCHDOG_USEC, when it
 * is set for this process), in seconds; 0 when systemd wants no pings. */
double sdnotify_watchdog_interval(void);

#endif
