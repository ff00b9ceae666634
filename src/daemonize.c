/*
 * daemonize: a pipe from the detached child to the parent that waits on it.
 */
#include "daemonize.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sysexits.h>
#include <unistd.h>

#include "log.h"

static int report_fd = -1;

int daemonize_detach(void)
{
	int p[2];
	if (pipe(p) != 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0) {
		unsigned char code;
		ssize_t n;
		close(p[1]);
		do
			n = read(p[0], &code, 1);
		while (n < 0 && errno == EINTR);
		/* No byte: the child died without a word. */
		_exit(n == 1 ? code : EX_SOFTWARE);
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

void daemonize_report(int code)
{
	if (report_fd < 0)
		return;
	unsigned char byte = (unsigned char)code;
	if (write(report_fd, &byte, 1) != 1)
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
