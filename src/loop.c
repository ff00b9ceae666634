/*
 * loop: wire signals to the engine through ev_signal watchers.
 */
#include "loop.h"

#include <ev.h>
#include <signal.h>
#include <stdlib.h>
#include <sysexits.h>

#include "engine.h"
#include "log.h"

struct loop_state {
	struct engine *engine;
	const struct loop_options *opts;
};

static void on_sighup(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct loop_state *st = w->data;
	char err[1024];
	(void)loop;
	(void)revents;

	if (st->opts->config_path == NULL) {
		log_warning("SIGHUP: running on built-in defaults and -d; nothing to reload");
		return;
	}
	struct config *cfg = config_load(st->opts->config_path, st->opts->conninfo_override, err, sizeof(err));
	if (cfg == NULL) {
		log_error("reload failed: %s; continuing with the same configuration", err);
		return;
	}
	engine_reload(st->engine, cfg);
}

static void on_sigterm(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct loop_state *st = w->data;
	(void)loop;
	(void)revents;
	log_info("received %s", w->signum == SIGINT ? "SIGINT" : "SIGTERM");
	engine_stop(st->engine);
}

int loop_run(struct config *cfg, const struct loop_options *opts)
{
	struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
	struct loop_state st = {.opts = opts};
	ev_signal hup, term, intr;

	if (loop == NULL) {
		log_error("cannot initialise the event loop");
		config_free(cfg);
		return EX_OSERR;
	}
	signal(SIGPIPE, SIG_IGN);
	st.engine = engine_new(loop, cfg, opts->on_ready, opts->arg); /* takes cfg */

	ev_signal_init(&hup, on_sighup, SIGHUP);
	ev_signal_init(&term, on_sigterm, SIGTERM);
	ev_signal_init(&intr, on_sigterm, SIGINT);
	hup.data = term.data = intr.data = &st;
	ev_signal_start(loop, &hup);
	ev_signal_start(loop, &term);
	ev_signal_start(loop, &intr);

	if (engine_start(st.engine) == 0)
		ev_run(loop, 0);

	int code = engine_exit_code(st.engine);
	ev_signal_stop(loop, &hup);
	ev_signal_stop(loop, &term);
	ev_signal_stop(loop, &intr);
	engine_free(st.engine);
	return code;
}
