/*
 * mock.c - the embedded Kafka: librdkafka's mock cluster (a real
 * Kafka-protocol broker on loopback ports, in this process), and the counter
 * producer of the seeds' KafkaApp.
 *
 * One handle hosts the cluster (test.mock.num.brokers) and does nothing else.
 * The producer is a second, ordinary client that reaches the brokers over
 * TCP like any other client.
 *
 * Broker down: in librdkafka 2.0.2, rd_kafka_mock_broker_set_down does not
 * always close a connection that is up; requests sent on it are then never
 * answered, and the client gives up on them only after socket.timeout.ms
 * (60 s by default), long after the broker is back.  The producer uses 5 s.
 */
#include "ckpt_kafka_ref.h"
#include "kafka_int.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAD_BYTES (64 * 1024)

struct ckpt_kafka_mock {
	rd_kafka_t *host; /* owns the mock cluster */
	rd_kafka_t *rk; /* the producer, an ordinary client */
	rd_kafka_mock_cluster_t *mc;
	char bootstrap[512];
	int verbose;
	/* producer thread */
	pthread_t th;
	int running;
	atomic_int stop;
	char topic[CKPT_TOPIC_MAX + 1];
	double rate;
	int keys;
	uint64_t limit;
	atomic_uint_fast64_t acked, failed;
	atomic_uint_fast64_t pad_acked; /* padding records delivered */
	int64_t result;
};

static void mock_log(const rd_kafka_t *rk, int level, const char *fac,
		     const char *buf)
{
	const ckpt_kafka_mock_t *m = rd_kafka_opaque(rk);
	if (m && m->verbose)
		fprintf(stderr, "rdkafka-mock %d %s: %s\n", level, fac, buf);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	ckpt_kafka_mock_t *m = opaque;
	(void)rk;
	if (msg->err)
		atomic_fetch_add(&m->failed, 1);
	else if (msg->_private) /* padding carries a marker */
		atomic_fetch_add(&m->pad_acked, 1);
	else
		atomic_fetch_add(&m->acked, 1);
}

int ckpt_kafka_mock_start(int brokers, int verbose, ckpt_kafka_mock_t **out)
{
	ckpt_kafka_mock_t *m;
	rd_kafka_conf_t *c;
	char es[512], num[16];

	if (brokers < 1 || brokers > 64)
		return ckpt__kafka_fail(-EINVAL, "brokers must be 1..64");
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->verbose = verbose;
	snprintf(num, sizeof(num), "%d", brokers);
	c = rd_kafka_conf_new();
	if (rd_kafka_conf_set(c, "test.mock.num.brokers", num, es, sizeof(es)) ||
	    rd_kafka_conf_set(c, "log.connection.close", "false", es,
			      sizeof(es))) {
		rd_kafka_conf_destroy(c);
		free(m);
		return ckpt__kafka_fail(-EIO, "mock cluster conf: %s", es);
	}
	rd_kafka_conf_set_opaque(c, m);
	rd_kafka_conf_set_log_cb(c, mock_log);
	m->host = rd_kafka_new(RD_KAFKA_PRODUCER, c, es, sizeof(es));
	if (!m->host) {
		rd_kafka_conf_destroy(c);
		free(m);
		return ckpt__kafka_fail(-EIO, "mock cluster: %s", es);
	}
	m->mc = rd_kafka_handle_mock_cluster(m->host);
	if (!m->mc) {
		rd_kafka_destroy(m->host);
		free(m);
		return ckpt__kafka_fail(-EIO, "mock cluster did not start");
	}
	snprintf(m->bootstrap, sizeof(m->bootstrap), "%s",
		 rd_kafka_mock_cluster_bootstraps(m->mc));

	/* Idempotent: a retry after a broker outage never duplicates a
	 * record, so the log holds each counter value once; no message
	 * timeout: a record is never given up. */
	c = rd_kafka_conf_new();
	if (rd_kafka_conf_set(c, "bootstrap.servers", m->bootstrap, es,
			      sizeof(es)) ||
	    rd_kafka_conf_set(c, "enable.idempotence", "true", es, sizeof(es)) ||
	    rd_kafka_conf_set(c, "linger.ms", "5", es, sizeof(es)) ||
	    rd_kafka_conf_set(c, "reconnect.backoff.max.ms", "1000", es,
			      sizeof(es)) ||
	    rd_kafka_conf_set(c, "socket.timeout.ms", "5000", es, sizeof(es)) ||
	    rd_kafka_conf_set(c, "message.timeout.ms", "0", es, sizeof(es)) ||
	    rd_kafka_conf_set(c, "log.connection.close", "false", es,
			      sizeof(es))) {
		rd_kafka_conf_destroy(c);
		rd_kafka_destroy(m->host);
		free(m);
		return ckpt__kafka_fail(-EIO, "producer conf: %s", es);
	}
	rd_kafka_conf_set_opaque(c, m);
	rd_kafka_conf_set_log_cb(c, mock_log);
	rd_kafka_conf_set_dr_msg_cb(c, dr_cb);
	m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, es, sizeof(es));
	if (!m->rk) {
		rd_kafka_conf_destroy(c);
		rd_kafka_destroy(m->host);
		free(m);
		return ckpt__kafka_fail(-EIO, "producer: %s", es);
	}
	*out = m;
	return 0;
}

void ckpt_kafka_mock_stop(ckpt_kafka_mock_t *m)
{
	if (!m)
		return;
	if (m->running)
		ckpt_kafka_mock_produce_stop(m);
	rd_kafka_flush(m->rk, 2000);
	rd_kafka_destroy(m->rk);
	rd_kafka_destroy(m->host);
	free(m);
}

const char *ckpt_kafka_mock_bootstrap(const ckpt_kafka_mock_t *m)
{
	return m->bootstrap;
}

rd_kafka_mock_cluster_t *ckpt_kafka_mock_cluster(ckpt_kafka_mock_t *m)
{
	return m->mc;
}

int ckpt_kafka_mock_topic(ckpt_kafka_mock_t *m, const char *topic,
			  int partitions)
{
	rd_kafka_resp_err_t err =
		rd_kafka_mock_topic_create(m->mc, topic, partitions, 1);
	if (err)
		return ckpt__kafka_fail(-EIO, "create topic %s: %s", topic,
					rd_kafka_err2str(err));
	return 0;
}

/* Queue one record; waits (bounded by the caller's loop) while the local
 * queue is full. */
static int produce_one(ckpt_kafka_mock_t *m, const char *topic, int keys,
		       uint64_t n)
{
	char key[32], val[32];
	int kl, vl;
	rd_kafka_resp_err_t err;

	kl = snprintf(key, sizeof(key), "%" PRIu64,
		      keys > 0 ? n % (uint64_t)keys : n);
	vl = snprintf(val, sizeof(val), "%" PRIu64, n);
	for (;;) {
		err = rd_kafka_producev(m->rk, RD_KAFKA_V_TOPIC(topic),
					RD_KAFKA_V_KEY(key, (size_t)kl),
					RD_KAFKA_V_VALUE(val, (size_t)vl),
					RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
					RD_KAFKA_V_END);
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			break;
		rd_kafka_poll(m->rk, 10);
		if (atomic_load(&m->stop) == 2)
			return -ECANCELED;
	}
	if (err)
		return ckpt__kafka_fail(-EIO, "produce to %s: %s", topic,
					rd_kafka_err2str(err));
	return 0;
}

static void *producer_main(void *arg)
{
	ckpt_kafka_mock_t *m = arg;
	uint64_t n = 0, t0 = ckpt__kafka_now_ns();

	while (!atomic_load(&m->stop) && (!m->limit || n < m->limit)) {
		if (m->rate > 0) {
			uint64_t due = t0 + (uint64_t)((double)n * 1e9 / m->rate);
			uint64_t now = ckpt__kafka_now_ns();
			if (due > now) {
				uint64_t d = due - now;
				rd_kafka_poll(m->rk, 0);
				usleep((useconds_t)(d / 1000 > 100000 ? 100000 :
									 d / 1000));
				continue;
			}
		}
		if (produce_one(m, m->topic, m->keys, n) < 0) {
			fprintf(stderr, "shmckpt kafka: %s\n",
				ckpt_kafka_last_error());
			break;
		}
		n++;
		rd_kafka_poll(m->rk, 0);
	}
	return NULL;
}

int ckpt_kafka_mock_produce_start(ckpt_kafka_mock_t *m, const char *topic,
				  double rate, int keys, uint64_t limit)
{
	int rc;
	if (m->running)
		return ckpt__kafka_fail(-EBUSY, "the producer already runs");
	if (strlen(topic) > CKPT_TOPIC_MAX)
		return ckpt__kafka_fail(-EINVAL, "topic name too long");
	snprintf(m->topic, sizeof(m->topic), "%s", topic);
	m->rate = rate;
	m->keys = keys;
	m->limit = limit;
	atomic_store(&m->stop, 0);
	rc = pthread_create(&m->th, NULL, producer_main, m);
	if (rc)
		return ckpt__kafka_fail(-rc, "producer thread: %s", strerror(rc));
	m->running = 1;
	return 0;
}

uint64_t ckpt_kafka_mock_produced(const ckpt_kafka_mock_t *m)
{
	return atomic_load(&((ckpt_kafka_mock_t *)m)->acked);
}

int64_t ckpt_kafka_mock_produce_stop(ckpt_kafka_mock_t *m)
{
	if (m->running) {
		atomic_store(&m->stop, 1);
		pthread_join(m->th, NULL);
		m->running = 0;
	}
	if (rd_kafka_flush(m->rk, 30000))
		fprintf(stderr, "shmckpt kafka: %d records not delivered in 30 s\n",
			rd_kafka_outq_len(m->rk));
	return (int64_t)atomic_load(&m->acked);
}

int ckpt_kafka_mock_produce_n(ckpt_kafka_mock_t *m, const char *topic,
			      int keys, uint64_t n)
{
	uint64_t i, base = atomic_load(&m->acked);
	int rc;
	for (i = 0; i < n; i++) {
		rc = produce_one(m, topic, keys, base + i);
		if (rc < 0)
			return rc;
		rd_kafka_poll(m->rk, 0);
	}
	if (rd_kafka_flush(m->rk, 30000))
		return ckpt__kafka_fail(-ETIMEDOUT, "records not delivered");
	return 0;
}

int ckpt_kafka_mock_watermarks(ckpt_kafka_mock_t *m, const char *topic,
			       int32_t partition, int64_t *lo, int64_t *hi)
{
	rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
		m->rk, topic, partition, lo, hi, 5000);
	if (err)
		return ckpt__kafka_fail(-EIO, "watermarks of %s [%" PRId32 "]: %s",
					topic, partition, rd_kafka_err2str(err));
	return 0;
}

int ckpt_kafka_mock_prune(ckpt_kafka_mock_t *m, const char *topic,
			  int32_t partition, int64_t offset, int64_t *lo)
{
	static char pad[PAD_BYTES];
	int64_t l = -1, h = -1;
	int i, rc;

	memset(pad, '0', sizeof(pad));
	/* 5 MiB of 64 KiB records is 80.  Each padding record is waited
	 * for by its own delivery report, not by a flush: the counter
	 * producer may be running, and a flush would wait for its records
	 * too, which never stop coming. */
	for (i = 0; i < 400; i++) {
		uint64_t want = atomic_load(&m->pad_acked) + 1;
		uint64_t deadline = ckpt__kafka_now_ns() + 30000000000ull;
		rc = ckpt_kafka_mock_watermarks(m, topic, partition, &l, &h);
		if (rc < 0)
			return rc;
		if (l > offset)
			break;
		if (rd_kafka_producev(m->rk, RD_KAFKA_V_TOPIC(topic),
				      RD_KAFKA_V_PARTITION(partition),
				      RD_KAFKA_V_KEY("pad", 3),
				      RD_KAFKA_V_VALUE(pad, sizeof(pad)),
				      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
				      RD_KAFKA_V_OPAQUE((void *)1),
				      RD_KAFKA_V_END))
			return ckpt__kafka_fail(-EIO, "padding %s [%" PRId32 "]",
						topic, partition);
		while (atomic_load(&m->pad_acked) < want) {
			if (ckpt__kafka_now_ns() > deadline)
				return ckpt__kafka_fail(-ETIMEDOUT,
							"padding of %s [%" PRId32
							"] not delivered in 30 s",
							topic, partition);
			rd_kafka_poll(m->rk, 10);
		}
	}
	if (lo)
		*lo = l;
	if (l <= offset)
		return ckpt__kafka_fail(-ETIMEDOUT,
					"log start of %s [%" PRId32
					"] still %" PRId64 " after padding",
					topic, partition, l);
	return 0;
}
