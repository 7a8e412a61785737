/*
 * cli.h - the 'shmckpt' command-line tool: subcommands and shared helpers.
 *
 * Exit codes of every subcommand: 0 success, 1 failure, 64 usage error.
 */
#ifndef CKPT_CLI_H
#define CKPT_CLI_H

#include <signal.h>

#define CLI_OK 0
#define CLI_FAIL 1
#define CLI_USAGE 64

/* Subcommands: argv[0] is the subcommand's name. */
int cmd_kafka_main(int argc, char **argv);
int cmd_consume_main(int argc, char **argv);
int cmd_demo_main(int argc, char **argv);
int cmd_stat_main(int argc, char **argv); /* cmd_stat.c */
int cmd_inspect_main(int argc, char **argv); /* cmd_slots.c */
int cmd_verify_main(int argc, char **argv); /* exit 0/1/2/64 */
int cmd_dump_main(int argc, char **argv);
int cmd_drop_region_main(int argc, char **argv); /* cmd_slots.c */

/* Parse a decimal integer in [min, max]; 0 or -1. */
int cli_parse_ll(const char *s, long long min, long long max, long long *out);
/* Parse a rate like "1", "2.5", "100/s"; 0 or -1. */
int cli_parse_rate(const char *s, double *out);

/* Print "shmckpt CMD: message" to stderr. */
void cli_err(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* SIGINT/SIGTERM set cli_stop (no SA_RESTART, so blocking calls return). */
extern volatile sig_atomic_t cli_stop;
void cli_catch_signals(void);

/* Path of this executable (to run subcommands in child processes). */
const char *cli_self(void);

#endif
