/*
 * cmd_kafka.c - 'shmckpt kafka': the embedded Kafka (the seeds' KafkaApp).
 * librdkafka's mock cluster: real Kafka-protocol brokers on loopback ports,
 * usable by any client (kcat, the JVM clients, shmckpt consume).
 */
#include "cli.h"
#include "ckpt_kafka_ref.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TOPICS 32

static void usage(FILE *f)
{
	fprintf(f,
"usage: shmckpt kafka [--brokers N] [--topic T [--partitions P]]...\n"
"                     [--produce] [--produce-rate R/s] [--keys K]\n"
"\n"
"Start an embedded Kafka (librdkafka's mock cluster) with N brokers on\n"
"loopback ports, create the topics, print 'bootstrap: HOST:PORT,...' on the\n"
"first line of stdout, and run until SIGINT/SIGTERM.\n"
"\n"
"  --brokers N         brokers, default 1\n"
"  --topic T           create topic T (repeatable), default 'Experience'\n"
"  --partitions P      partitions of the preceding --topic, default 1\n"
"  --produce           produce a counter to the first topic: record n has\n"
"                      key n and value n (the seeds' KafkaApp), 1/s\n"
"  --produce-rate R    ... at R records per second (implies --produce;\n"
"                      0 = as fast as possible)\n"
"  --keys K            key n %% K instead of n (K keys, values still n)\n"
"  --max-records N     stop producing after N records\n"
"  --verbose           librdkafka logs on stderr\n"
"  --help              this text\n"
"\n"
"Retention: the mock keeps about 5 MiB (or 100000 batches) per partition\n"
"and deletes the oldest batches beyond that; librdkafka 2.0.2 has no knob\n"
"for it.  Commands on stdin (one per line), to stage the seeds' scenarios:\n"
"  prune TOPIC PARTITION     append padding until the log start moves past\n"
"                            the current end (all present records deleted)\n"
"  down BROKER | up BROKER   take a broker (1..N) down or up\n"
"  wm TOPIC PARTITION        print the watermarks\n"
"\n"
"Exit: 0 after a signal, 1 failure, 64 usage.\n");
}

static void stdin_command(ckpt_kafka_mock_t *m, char *line)
{
	char topic[256];
	long long a;
	int32_t part;
	int64_t lo, hi;
	int id;

	if (sscanf(line, "prune %255s %d", topic, &part) == 2) {
		if (ckpt_kafka_mock_watermarks(m, topic, part, &lo, &hi) < 0 ||
		    ckpt_kafka_mock_prune(m, topic, part, hi - 1, &lo) < 0)
			printf("prune failed: %s\n", ckpt_kafka_last_error());
		else
			printf("pruned %s [%d]: log start now %" PRId64 "\n",
			       topic, part, lo);
	} else if (sscanf(line, "wm %255s %d", topic, &part) == 2) {
		if (ckpt_kafka_mock_watermarks(m, topic, part, &lo, &hi) < 0)
			printf("wm failed: %s\n", ckpt_kafka_last_error());
		else
			printf("%s [%d]: low %" PRId64 " high %" PRId64 "\n",
			       topic, part, lo, hi);
	} else if (sscanf(line, "down %lld", &a) == 1 ||
		   sscanf(line, "up %lld", &a) == 1) {
		rd_kafka_resp_err_t err;
		id = (int)a;
		err = line[0] == 'd' ?
			      rd_kafka_mock_broker_set_down(
				      ckpt_kafka_mock_cluster(m), id) :
			      rd_kafka_mock_broker_set_up(
				      ckpt_kafka_mock_cluster(m), id);
		printf("broker %d %s: %s\n", id, line[0] == 'd' ? "down" : "up",
		       rd_kafka_err2str(err));
	} else if (line[0] && line[0] != '\n') {
		printf("unknown command: %s", line);
	}
	fflush(stdout);
}

int cmd_kafka_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "brokers", required_argument, NULL, 'n' },
		{ "topic", required_argument, NULL, 't' },
		{ "partitions", required_argument, NULL, 'p' },
		{ "produce", no_argument, NULL, 'P' },
		{ "produce-rate", required_argument, NULL, 'r' },
		{ "keys", required_argument, NULL, 'k' },
		{ "max-records", required_argument, NULL, 'm' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *topics[MAX_TOPICS];
	int parts[MAX_TOPICS];
	int ntopics = 0, brokers = 1, produce = 0, keys = 0, verbose = 0;
	int stdin_open = 1, i, c, rc = CLI_OK;
	double rate = 1.0;
	uint64_t max_records = 0, last = 0, tick = 0;
	ckpt_kafka_mock_t *m;
	long long v;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (cli_parse_ll(optarg, 1, 64, &v)) {
				cli_err("kafka", "--brokers: 1..64");
				return CLI_USAGE;
			}
			brokers = (int)v;
			break;
		case 't':
			if (ntopics == MAX_TOPICS) {
				cli_err("kafka", "at most %d topics", MAX_TOPICS);
				return CLI_USAGE;
			}
			topics[ntopics] = optarg;
			parts[ntopics++] = 1;
			break;
		case 'p':
			if (!ntopics) {
				cli_err("kafka", "--partitions follows a --topic");
				return CLI_USAGE;
			}
			if (cli_parse_ll(optarg, 1, 10000, &v)) {
				cli_err("kafka", "--partitions: 1..10000");
				return CLI_USAGE;
			}
			parts[ntopics - 1] = (int)v;
			break;
		case 'P': produce = 1; break;
		case 'r':
			if (cli_parse_rate(optarg, &rate)) {
				cli_err("kafka", "--produce-rate: a number of "
					"records per second, like 100 or 100/s");
				return CLI_USAGE;
			}
			produce = 1;
			break;
		case 'k':
			if (cli_parse_ll(optarg, 1, 1000000000, &v)) {
				cli_err("kafka", "--keys: 1..1000000000");
				return CLI_USAGE;
			}
			keys = (int)v;
			break;
		case 'm':
			if (cli_parse_ll(optarg, 1, INT64_MAX, &v)) {
				cli_err("kafka", "--max-records: a positive integer");
				return CLI_USAGE;
			}
			max_records = (uint64_t)v;
			break;
		case 'v': verbose = 1; break;
		case 'h': usage(stdout); return CLI_OK;
		default: usage(stderr); return CLI_USAGE;
		}
	}
	if (optind < argc) {
		cli_err("kafka", "unexpected argument '%s'", argv[optind]);
		return CLI_USAGE;
	}
	if (!ntopics) {
		topics[0] = "Experience";
		parts[0] = 1;
		ntopics = 1;
	}
	cli_catch_signals();
	if (ckpt_kafka_mock_start(brokers, verbose, &m) < 0) {
		cli_err("kafka", "%s", ckpt_kafka_last_error());
		return CLI_FAIL;
	}
	for (i = 0; i < ntopics; i++)
		if (ckpt_kafka_mock_topic(m, topics[i], parts[i]) < 0) {
			cli_err("kafka", "%s", ckpt_kafka_last_error());
			ckpt_kafka_mock_stop(m);
			return CLI_FAIL;
		}
	printf("bootstrap: %s\n", ckpt_kafka_mock_bootstrap(m));
	for (i = 0; i < ntopics; i++)
		printf("topic: %s partitions %d\n", topics[i], parts[i]);
	if (produce)
		printf("producing a counter to %s at %g records/s%s\n", topics[0],
		       rate, rate == 0 ? " (unthrottled)" : "");
	fflush(stdout);
	if (produce &&
	    ckpt_kafka_mock_produce_start(m, topics[0], rate, keys,
					  max_records) < 0) {
		cli_err("kafka", "%s", ckpt_kafka_last_error());
		ckpt_kafka_mock_stop(m);
		return CLI_FAIL;
	}
	while (!cli_stop) {
		struct pollfd pfd = { .fd = 0, .events = POLLIN };
		int n = poll(&pfd, stdin_open ? 1 : 0, 1000);
		if (n > 0 && (pfd.revents & (POLLIN | POLLHUP))) {
			char line[512];
			if (fgets(line, sizeof(line), stdin))
				stdin_command(m, line);
			else
				stdin_open = 0; /* EOF: keep serving */
		}
		if (produce && ++tick % 10 == 0) {
			uint64_t now = ckpt_kafka_mock_produced(m);
			if (now != last && verbose)
				fprintf(stderr, "produced %" PRIu64 "\n", now);
			last = now;
		}
	}
	if (produce)
		printf("produced %" PRId64 " records\n",
		       ckpt_kafka_mock_produce_stop(m));
	ckpt_kafka_mock_stop(m);
	return rc;
}
