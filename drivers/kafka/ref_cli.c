/*
 * ref_cli.c - the command line of the reference consumer ('shmckpt
 * consume'), in the library so that tests and the demo can run the very
 * same program in a child process (they re-execute themselves).
 */
#include "ckpt_kafka_ref.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PROPS 64

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void catch_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static int parse_ll(const char *s, long long min, long long max,
		    long long *out)
{
	char *end;
	long long v;
	if (!s || !*s)
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

__attribute__((format(printf, 1, 2))) static void err(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "shmckpt consume: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: shmckpt consume --bootstrap HOST:PORT[,...] --dir DIR [options]\n"
"\n"
"Consume TOPIC as a member of GROUP, aggregating per key the number of\n"
"records and the sum of their integer values.  Each partition is a shmckpt\n"
"stream named GROUP.TOPIC.PARTITION under DIR; every batch commits the\n"
"partition's next offset and its changed keys as one epoch.  After a crash,\n"
"a restart resumes from the checkpoint with the state exactly as it was.\n"
"\n"
"  --bootstrap B       Kafka bootstrap servers (required)\n"
"  --dir D             checkpoint directory, must exist (required)\n"
"  --group G           consumer group, default 'shmckpt'\n"
"  --topic T           topic, default 'Experience'\n"
"  --on-gap P          when the checkpointed offset was deleted by retention:\n"
"                      fail (default: refuse, naming the records lost),\n"
"                      earliest or latest (resume there, record the gap)\n"
"  --offset-reset R    start of a partition without checkpoint and without\n"
"                      committed offset: earliest (default) or latest\n"
"  --batch-ms N        batch length in ms, default 100\n"
"  --max-messages N    stop after N records\n"
"  --exit-idle-ms N    stop after N ms without records\n"
"  --assign            take every partition, no group membership (like\n"
"                      Spark's direct stream); restarts are immediate\n"
"  --commit-kafka      also commit durable offsets to the group (async),\n"
"                      so lag tools see progress\n"
"  -X, --prop N=V      a librdkafka property (repeatable), e.g.\n"
"                      -X security.protocol=SASL_SSL for a real cluster\n"
"  --verbose           librdkafka and driver logs on stderr\n"
"  --help              this text\n"
"\n"
"On stdout: one line per partition assigned (the checkpoint it resumes\n"
"from) and revoked, and a summary at the end.  Stops on SIGINT/SIGTERM\n"
"after committing.  Exit: 0 ok, 1 failure (a refused retention gap is a\n"
"failure: its message says what to do), 64 usage.\n");
}

int ckpt_kafka_ref_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "bootstrap", required_argument, NULL, 'b' },
		{ "dir", required_argument, NULL, 'd' },
		{ "group", required_argument, NULL, 'g' },
		{ "topic", required_argument, NULL, 't' },
		{ "on-gap", required_argument, NULL, 'G' },
		{ "offset-reset", required_argument, NULL, 'r' },
		{ "batch-ms", required_argument, NULL, 'B' },
		{ "max-messages", required_argument, NULL, 'm' },
		{ "exit-idle-ms", required_argument, NULL, 'i' },
		{ "assign", no_argument, NULL, 'a' },
		{ "commit-kafka", no_argument, NULL, 'c' },
		{ "prop", required_argument, NULL, 'X' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	ckpt_kafka_ref_opts_t o;
	ckpt_kafka_ref_result_t res;
	/* -X properties point into argv, which outlives the run */
	const char *props[MAX_PROPS + 1];
	int nprops = 0;
	long long v;
	int c, rc;

	memset(&o, 0, sizeof(o));
	o.group = "shmckpt";
	o.topic = "Experience";
	o.mode = CKPT_KAFKA_GROUP;
	o.on_gap = CKPT_KAFKA_GAP_FAIL;
	o.offset_reset = "earliest";
	o.batch_ms = 100;
	optind = 1;
	while ((c = getopt_long(argc, argv, "hX:", lo, NULL)) != -1) {
		switch (c) {
		case 'X':
			if (!strchr(optarg, '=') || optarg[0] == '=') {
				err("-X %s: expected name=value", optarg);
				return 64;
			}
			if (nprops == MAX_PROPS) {
				err("at most %d -X properties", MAX_PROPS);
				return 64;
			}
			props[nprops++] = optarg;
			break;
		case 'b': o.bootstrap = optarg; break;
		case 'd': o.dir = optarg; break;
		case 'g': o.group = optarg; break;
		case 't': o.topic = optarg; break;
		case 'G':
			if (!strcmp(optarg, "fail"))
				o.on_gap = CKPT_KAFKA_GAP_FAIL;
			else if (!strcmp(optarg, "earliest"))
				o.on_gap = CKPT_KAFKA_GAP_EARLIEST;
			else if (!strcmp(optarg, "latest"))
				o.on_gap = CKPT_KAFKA_GAP_LATEST;
			else {
				err("--on-gap must be fail, "
					"earliest or latest, not '%s'", optarg);
				return 64;
			}
			break;
		case 'r':
			if (strcmp(optarg, "earliest") && strcmp(optarg, "latest")) {
				err("--offset-reset must be "
					"earliest or latest");
				return 64;
			}
			o.offset_reset = optarg;
			break;
		case 'B':
			if (parse_ll(optarg, 1, 3600000, &v)) {
				err("--batch-ms: 1..3600000");
				return 64;
			}
			o.batch_ms = (int)v;
			break;
		case 'm':
			if (parse_ll(optarg, 1, INT64_MAX, &v)) {
				err("--max-messages: a positive integer");
				return 64;
			}
			o.max_messages = (uint64_t)v;
			break;
		case 'i':
			if (parse_ll(optarg, 1, 86400000, &v)) {
				err("--exit-idle-ms: 1..86400000");
				return 64;
			}
			o.exit_idle_ms = (int)v;
			break;
		case 'a': o.mode = CKPT_KAFKA_ASSIGN; break;
		case 'c': o.commit_kafka = 1; break;
		case 'v': o.verbose = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 64;
		}
	}
	if (optind < argc) {
		err("unexpected argument '%s'", argv[optind]);
		return 64;
	}
	if (!o.bootstrap || !o.dir) {
		err("--bootstrap and --dir are required "
			"(shmckpt consume --help)");
		return 64;
	}
	props[nprops] = NULL;
	o.props = props;
	catch_signals();
	o.stop = &stop_flag;
	setvbuf(stdout, NULL, _IOLBF, 0);
	rc = ckpt_kafka_ref_run(&o, &res);
	if (rc < 0) {
		err("%s", ckpt_kafka_last_error());
		return 1;
	}
	return 0;
}
