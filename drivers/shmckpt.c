/*
 * shmckpt.c - main of the 'shmckpt' tool: dispatch to a subcommand.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const struct {
	const char *name;
	int (*main)(int argc, char **argv);
	const char *what;
} cmds[] = {
	{ "kafka", cmd_kafka_main,
	  "the embedded Kafka (mock cluster) and a counter producer" },
	{ "consume", cmd_consume_main,
	  "the reference consumer: count and sum per key, checkpointed" },
	{ "demo", cmd_demo_main,
	  "the end-to-end demo: crashes, retention gap, slow storage" },
	{ "stat", cmd_stat_main,
	  "live counters of streams: text, JSON, Prometheus; --watch" },
	{ "inspect", cmd_inspect_main,
	  "both slot files of a stream: valid or why not, epoch, gaps" },
	{ "verify", cmd_verify_main,
	  "exit 0/1/2: newest slot valid / falls back / none valid" },
	{ "dump", cmd_dump_main,
	  "the newest valid slot as JSON: offsets, metadata, state" },
	{ "drop-region", cmd_drop_region_main,
	  "give up a (damaged) ring, keep the slots: --yes or --dry-run" },
};

static void usage(FILE *f)
{
	size_t i;
	fprintf(f, "usage: shmckpt COMMAND [OPTIONS]   (shmckpt COMMAND --help)\n\n"
		   "commands:\n");
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].what);
	fprintf(f, "\nexit codes: 0 success, 1 failure, 64 usage error\n");
}

int main(int argc, char **argv)
{
	size_t i;
	if (argc < 2) {
		usage(stderr);
		return CLI_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return CLI_OK;
	}
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].main(argc - 1, argv + 1);
	fprintf(stderr, "shmckpt: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return CLI_USAGE;
}
