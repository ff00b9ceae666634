/*
 * daemonize: a pipe from the detached child to the parent that waits on it.
 */
#include "daemonize.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "log.h"

static int report_fd = -1;

/* The parent: wait for the child's code and, on failure, its reason (the
 * child may have no terminal and the system no syslog: say it here). */
static void wait_for_child(int fd)
{
	unsigned char code;
	char reason[2048];
	size_t len = 0;
	ssize_t n;

	do
		n = read(fd, &code, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1) {
		fprintf(stderr, "rollupd: the daemon exited before it was ready, without saying why (see syslog)\n");
		_exit(EX_SOFTWARE);
	}
	while (len < sizeof(reason) - 1) {
		n = read(fd, reason + len, sizeof(reason) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	reason[len] = '\0';
	if (code != 0)
		fprintf(stderr, "rollupd: not started (exit %u): %s\n", code, len > 0 ? reason : "see syslog");
	_exit(code);
}

int daemonize_detach(void)
{
	int p[2];
	if (pipe(p) != 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0) {
		close(p[1]);
		wait_for_child(p[0]);
	}
	close(p[0]);
	report_fd = p[1];
	if (setsid() < 0 || chdir("/") != 0)
		return -1;
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	return 0;
}

void daemonize_report(int code, const char *reason)
{
	if (report_fd < 0)
		return;
	unsigned char byte = (unsigned char)code;
	bool sent = write(report_fd, &byte, 1) == 1;
	if (sent && code != 0 && reason != NULL && reason[0] != '\0')
		sent = write(report_fd, reason, strlen(reason)) == (ssize_t)strlen(reason);
	if (!sent)
		log_warning("could not report to the waiting parent code=%d", code);
	close(report_fd);
	report_fd = -1;
}

int pidfile_write(const char *path)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "%ld\n", (long)getpid());
	return fclose(f);
}
