/*
 * cmd_consume.c - 'shmckpt consume': the reference consumer (the seeds'
 * SparkApp).  The program lives in the driver library (ref_cli.c) so that
 * the tests and the demo run exactly this one in their child processes.
 */
#include "cli.h"
#include "ckpt_kafka_ref.h"

int cmd_consume_main(int argc, char **argv)
{
	return ckpt_kafka_ref_main(argc, argv);
}
