// SPDX-License-Identifier: Apache-2.0
/*
 * axonemed: parse and validate the configuration, load the modules it lists,
 * run them on one libevent loop until SIGTERM, and leave the datapath in
 * place on exit (or remove everything with --purge).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/libbpf.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "core.h"
#include "jalloc.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: axonemed [-c FILE] [--check-config] [--purge] [--list-options]\n"
		   "                [--log-level error|warn|info|debug]\n"
		   "  -c, --config FILE   configuration (default " SYSCONFDIR "/axonemed.conf)\n"
		   "  --check-config      validate the file and every module's options, then exit\n"
		   "  --purge             remove pinned maps, attached programs and state a previous\n"
		   "                      run left, then exit\n"
		   "  --list-options      print the options each configured module accepts\n");
}

static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	log_vmsg("libbpf", level == LIBBPF_WARN ? AXN_LOG_WARN : AXN_LOG_INFO, fmt, ap);
	return 0;
}

static int mkdir_p(const char *dir)
{
	char tmp[PATH_MAX];

	if (snprintf(tmp, sizeof(tmp), "%s", dir) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
				return -errno;
			*p = '/';
		}
	if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct agent *a = arg;

	if (sig == SIGHUP) {
		log_info("SIGHUP: reloading %s", a->conf_path);
		(void)agent_reload(a);
		return;
	}
	log_info("%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	a->stopping = true;
	event_base_loopbreak(a->base);
}

static int pid_alive(const char *pidfile)
{
	char buf[32] = {0};
	int fd = open(pidfile, O_RDONLY | O_CLOEXEC);
	long pid;

	if (fd < 0)
		return 0;
	if (read(fd, buf, sizeof(buf) - 1) <= 0) {
		close(fd);
		return 0;
	}
	close(fd);
	pid = strtol(buf, NULL, 10);
	return pid > 0 && pid != getpid() && kill((pid_t)pid, 0) == 0 ? (int)pid : 0;
}

static int write_pidfile(const char *path)
{
	char buf[32];
	int fd, n;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (write(fd, buf, (size_t)n) != n) {
		close(fd);
		return -EIO;
	}
	close(fd);
	return 0;
}

static void list_options(struct agent *a)
{
	struct module *m;

	TAILQ_FOREACH(m, &a->modules, link) {
		if (!m->desc)
			continue;
		printf("%s: %s\n", m->name, m->desc->description ? m->desc->description : "");
		for (const struct axn_option *o = m->desc->options; o && o->key; o++)
			printf("  %-20s %-8s default %-16s %s\n", o->key,
			       o->type == AXN_OPT_BOOL	   ? "bool"
			       : o->type == AXN_OPT_INT    ? "int"
			       : o->type == AXN_OPT_STRING ? "string"
							   : "list",
			       o->flags & AXN_OPTF_REQUIRED ? "(required)" : o->def ? o->def : "-",
			       o->help ? o->help : "");
	}
}

static int purge(struct agent *a, const char *pidfile)
{
	int pid = pid_alive(pidfile), r1, r2;

	if (pid) {
		log_err("purge: an agent (pid %d) is running with %s; stop it first", pid, pidfile);
		return -EBUSY;
	}
	r1 = hooks_purge(a);
	r2 = maps_purge(a);
	(void)unlink(pidfile);
	return r1 < 0 ? r1 : r2;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", no_argument, NULL, 'C'},
		{"purge", no_argument, NULL, 'P'},
		{"list-options", no_argument, NULL, 'L'},
		{"log-level", required_argument, NULL, 'l'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{},
	};
	const char *conf_path = SYSCONFDIR "/axonemed.conf", *level = NULL;
	bool check = false, do_purge = false, list = false;
	struct event *sig_ev[3] = {0};
	struct parsed_conf *pc = NULL;
	char hostname[256], pidfile[PATH_MAX];
	struct agent *a = NULL;
	char *err = NULL;
	int c, r, ret = 1;

	/*
	 * First, before any jansson allocation: a block must be freed by the
	 * allocator that made it. Keeps trees out of the glibc heap (jalloc.c).
	 */
	jalloc_install();
	while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			conf_path = optarg;
			break;
		case 'C':
			check = true;
			break;
		case 'P':
			do_purge = true;
			break;
		case 'L':
			list = true;
			break;
		case 'l':
			level = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("axonemed %s (module ABI %d.%d)\n", PACKAGE_VERSION, AXN_ABI_MAJOR,
			       AXN_ABI_MINOR);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	setvbuf(stderr, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);

	a = agent_new();
	if (!a) {
		log_err("out of memory");
		return 1;
	}
	a->conf_path = conf_path;
	r = conf_parse(conf_path, &pc, &err);
	if (r < 0) {
		log_err("configuration rejected: %s", err ? err : strerror(-r));
		goto out;
	}
	a->conf = pc->agent;
	if (level && log_level_parse(level) < 0) {
		log_err("--log-level %s: not one of error, warn, info, debug", level);
		goto out;
	}
	log_set_level(log_level_parse(level ? level : a->conf.log_level));
	a->log_level_fixed = level != NULL;
	if (!a->conf.node_name) {
		if (gethostname(hostname, sizeof(hostname)) < 0)
			snprintf(hostname, sizeof(hostname), "unknown");
		hostname[sizeof(hostname) - 1] = '\0';
		a->conf.node_name = hostname;
	}
	libbpf_set_print(libbpf_log);
	snprintf(pidfile, sizeof(pidfile), "%s/axonemed.pid", a->conf.rundir);

	if (do_purge) {
		ret = purge(a, pidfile) < 0;
		goto out;
	}

	/* Load every module and validate its options before any module code runs. */
	r = loader_check_dir(a->conf.moduledir, &err);
	if (r < 0) {
		log_err("configuration rejected: %s", err ? err : strerror(-r));
		goto out;
	}
	r = agent_load_modules(a, pc, &err);
	if (r < 0) {
		log_err("configuration rejected: %s", err ? err : strerror(-r));
		goto out;
	}
	if (check || list) {
		if (list)
			list_options(a);
		else
			printf("%s: configuration OK\n", conf_path);
		ret = 0;
		goto out;
	}

	r = mkdir_p(a->conf.rundir);
	if (r < 0) {
		log_err("rundir %s: %s", a->conf.rundir, strerror(-r));
		goto out;
	}
	if (pid_alive(pidfile)) {
		log_err("another agent (pid %d) runs with %s", pid_alive(pidfile), pidfile);
		goto out;
	}
	if (evthread_use_pthreads() < 0) {
		log_err("libevent has no pthreads support");
		goto out;
	}
	a->base = event_base_new();
	if (!a->base) {
		log_err("cannot create the event loop");
		goto out;
	}
	if (store_init(a) < 0 || maps_init(a) < 0 || hooks_init(a) < 0 || api_init(a) < 0 ||
	    metrics_init(a) < 0 || core_register_endpoints(a) < 0)
		goto out; /* each logged its reason */
	r = write_pidfile(pidfile);
	if (r < 0) {
		log_err("pid file %s: %s", pidfile, strerror(-r));
		goto out;
	}
	sig_ev[0] = evsignal_new(a->base, SIGHUP, on_signal, a);
	sig_ev[1] = evsignal_new(a->base, SIGTERM, on_signal, a);
	sig_ev[2] = evsignal_new(a->base, SIGINT, on_signal, a);
	for (int i = 0; i < 3; i++)
		if (!sig_ev[i] || event_add(sig_ev[i], NULL) < 0) {
			log_err("cannot watch signals");
			goto out_pid;
		}

	log_info("starting\tnode=%s conf=%s version=%s", a->conf.node_name, conf_path,
		 PACKAGE_VERSION);
	r = agent_start_modules(a);
	if (r < 0) {
		log_err("a required module failed to start; exiting");
		agent_stop_modules(a);
		goto out_pid;
	}
	event_base_dispatch(a->base);

	a->stopping = true;
	agent_stop_modules(a);
	log_info("stopped; pinned maps and attached programs stay in place");
	ret = 0;
out_pid:
	(void)unlink(pidfile);
out:
	for (int i = 0; i < 3; i++)
		if (sig_ev[i])
			event_free(sig_ev[i]);
	free(err);
	if (a) {
		/* Modules first: their handles reference the loop and the registries. */
		struct module *m;

		TAILQ_FOREACH(m, &a->modules, link)
			handles_reclaim(m, false);
		handles_reclaim(a->core_mod, false);
		metrics_fini(a);
		api_fini(a);
		hooks_fini(a);
		maps_fini(a);
		store_fini(a);
		if (a->base)
			event_base_free(a->base);
		agent_free(a);
	}
	conf_free(pc);
	return ret;
}
