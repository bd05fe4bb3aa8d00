/*
 * metrics.c — counters kept on the loop thread and their Prometheus text exposition.
 *
 * Requests are counted by route and status code, latency in a fixed-bucket histogram per
 * route; gauges (open connections, queued jobs) are read from the server when /metrics is
 * asked. No locks: only the loop thread writes or reads these.
 */
#include "server.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double bucket_le[SRV_LATENCY_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
						      0.05,   0.1,   0.25,   0.5,   1.0,  5.0};
/* The codes counted one by one within each class; others land in the class's last slot.
 * 499: the client went away while its request's body arrived (conn.c). 409, 415, 422 and 429
 * are what an operator watches for (a conflict, a phone's recording refused, a rate limit),
 * where they were lumped into 4xx (the config review); 412, 416 and 423 are answered too (a
 * tus client without Tus-Resumable or a stale If-Match, a range past an audio's end, an upload
 * whose PATCH is still being written) and were left in 4xx after them. 414, 417, 431 and 505
 * are the parser's refusals (a target, an expectation, a head or a version it does not take):
 * a client sending them again and again is told apart from other 4xx too. */
#define KNOWN 18
static const int known[6][KNOWN] = {
	{0},
	{100},
	{200, 201, 204, 206},
	{304},
	{400, 401, 403, 404, 405, 408, 409, 412, 413, 414, 415, 416, 417, 422, 423, 429, 431, 499},
	{500, 501, 503, 505, 507},
};
_Static_assert(sizeof ((srv_route_stats *)0)->by_status[0] ==
		       (KNOWN + 1) * sizeof ((srv_route_stats *)0)->by_status[0][0],
	       "a slot per known code and one for the rest");

int srv_metrics_init(srv_metrics *m, const srv_route *routes, size_t n)
{
	memset(m, 0, sizeof *m);
	m->routes = calloc(n + 1, sizeof *m->routes);
	if (!m->routes)
		return -1;
	for (size_t i = 0; i < n; i++)
		m->routes[i].route = routes[i].name;
	m->routes[n].route = "unrouted";
	m->route_count = n + 1;
	return 0;
}

void srv_metrics_free(srv_metrics *m)
{
	free(m->routes);
	m->routes = NULL;
}

static int slot_of(int status, int *cls)
{
	*cls = status / 100;
	if (*cls < 1 || *cls > 5)
		*cls = 5;
	for (int i = 0; i < KNOWN; i++)
		if (known[*cls][i] == status)
			return i;
	return KNOWN;
}

void srv_metrics_request(srv_metrics *m, size_t route_index, int status, double seconds)
{
	if (route_index >= m->route_count)
		route_index = m->route_count - 1;
	srv_route_stats *r = &m->routes[route_index];
	int cls, slot = slot_of(status, &cls);
	r->by_status[cls][slot]++;
	int b = 0;
	while (b < SRV_LATENCY_BUCKETS && seconds > bucket_le[b])
		b++;
	r->latency[b]++;
	r->latency_sum += seconds;
	r->count++;
}

typedef struct out {
	char *p;
	size_t len, cap;
	bool failed;
} out;

static void put(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(out *o, const char *fmt, ...)
{
	if (o->failed)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->failed = true;
			return;
		}
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		size_t cap = o->cap * 2 + (size_t)n;
		char *p = realloc(o->p, cap);
		if (!p) {
			o->failed = true;
			return;
		}
		o->p = p;
		o->cap = cap;
	}
}

char *srv_metrics_render(const srv_server *s, size_t *len)
{
	const srv_metrics *m = &s->metrics;
	out o = {malloc(8192), 0, 8192, false};
	if (!o.p)
		return NULL;
	put(&o, "# HELP jiayin_http_requests_total Requests answered, by route and status.\n"
		"# TYPE jiayin_http_requests_total counter\n");
	for (size_t i = 0; i < m->route_count; i++) {
		const srv_route_stats *r = &m->routes[i];
		for (int cls = 1; cls <= 5; cls++)
			for (int k = 0; k <= KNOWN; k++) {
				if (!r->by_status[cls][k])
					continue;
				if (k < KNOWN && known[cls][k])
					put(&o, "jiayin_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
					    r->route, known[cls][k],
					    (unsigned long long)r->by_status[cls][k]);
				else
					put(&o, "jiayin_http_requests_total{route=\"%s\",status=\"%dxx\"} %llu\n",
					    r->route, cls, (unsigned long long)r->by_status[cls][k]);
			}
	}
	put(&o, "# HELP jiayin_http_request_duration_seconds Time from a request's head to its "
		"response written.\n# TYPE jiayin_http_request_duration_seconds histogram\n");
	for (size_t i = 0; i < m->route_count; i++) {
		const srv_route_stats *r = &m->routes[i];
		if (!r->count)
			continue;
		uint64_t cum = 0;
		for (int b = 0; b < SRV_LATENCY_BUCKETS; b++) {
			cum += r->latency[b];
			put(&o, "jiayin_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
			    r->route, bucket_le[b], (unsigned long long)cum);
		}
		put(&o, "jiayin_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n"
			"jiayin_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
			"jiayin_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
		    r->route, (unsigned long long)r->count, r->route, r->latency_sum, r->route,
		    (unsigned long long)r->count);
	}
	put(&o,
	    "# HELP jiayin_connections_open Client connections open now.\n"
	    "# TYPE jiayin_connections_open gauge\njiayin_connections_open %u\n"
	    "# HELP jiayin_connections_total Client connections accepted.\n"
	    "# TYPE jiayin_connections_total counter\njiayin_connections_total %llu\n"
	    "# HELP jiayin_connections_refused_total Connections turned away at the limit.\n"
	    "# TYPE jiayin_connections_refused_total counter\njiayin_connections_refused_total "
	    "%llu\n"
	    "# HELP jiayin_jobs_queued Blocking jobs queued or running, heavy ones apart.\n"
	    "# TYPE jiayin_jobs_queued gauge\njiayin_jobs_queued %u\n"
	    "# HELP jiayin_heavy_jobs_queued Transcodes and exports queued or running.\n"
	    "# TYPE jiayin_heavy_jobs_queued gauge\njiayin_heavy_jobs_queued %u\n"
	    "# HELP jiayin_heavy_jobs_reserved Transcodes reserved by plain uploads whose bodies "
	    "are arriving.\n"
	    "# TYPE jiayin_heavy_jobs_reserved gauge\njiayin_heavy_jobs_reserved %u\n"
	    "# HELP jiayin_upload_retries_waiting Plain uploads sent again whose recording is in, "
	    "waiting for the same phone's first copy to be stored rather than transcoded again.\n"
	    "# TYPE jiayin_upload_retries_waiting gauge\njiayin_upload_retries_waiting %u\n"
	    "# HELP jiayin_jobs_refused_total Requests refused because a job queue was full, or "
	    "their family had its share of heavy jobs.\n"
	    "# TYPE jiayin_jobs_refused_total counter\njiayin_jobs_refused_total %llu\n"
	    "# HELP jiayin_http_bytes_received_total Bytes read from clients.\n"
	    "# TYPE jiayin_http_bytes_received_total counter\njiayin_http_bytes_received_total "
	    "%llu\n"
	    "# HELP jiayin_http_bytes_sent_total Bytes queued to clients (responses, 100 Continue, "
	    "refusals at the accept).\n"
	    "# TYPE jiayin_http_bytes_sent_total counter\njiayin_http_bytes_sent_total %llu\n"
	    "# HELP jiayin_http_parse_errors_total Requests refused by the HTTP parser.\n"
	    "# TYPE jiayin_http_parse_errors_total counter\njiayin_http_parse_errors_total %llu\n"
	    "# HELP jiayin_storage_errors_total Storage calls that failed.\n"
	    "# TYPE jiayin_storage_errors_total counter\njiayin_storage_errors_total %llu\n"
	    "# HELP jiayin_audit_failures_total Changes made whose audit record could not be "
	    "written (each also an audit_failed event in the log).\n"
	    "# TYPE jiayin_audit_failures_total counter\njiayin_audit_failures_total %llu\n"
	    "# HELP jiayin_families_set_aside_total Families whose mailbox was found damaged (or "
	    "another family's) and moved to quarantine/ (each also a family_set_aside event in the "
	    "log).\n"
	    "# TYPE jiayin_families_set_aside_total counter\njiayin_families_set_aside_total %llu\n"
	    "# HELP jiayin_transcode_seconds_total Time spent transcoding uploads, refused ones "
	    "too.\n"
	    "# TYPE jiayin_transcode_seconds_total counter\njiayin_transcode_seconds_total %.6f\n"
	    "# HELP jiayin_transcodes_total Uploads transcoded (plain and resumable), whatever "
	    "became of their recordings.\n"
	    "# TYPE jiayin_transcodes_total counter\njiayin_transcodes_total %llu\n"
	    "# HELP jiayin_transcodes_not_stored_total Of those, the ones that added no message: "
	    "the recording refused (422, 413), the mailbox full (507), its sender or recipient "
	    "gone meanwhile, storing failed, or its key stored meanwhile by another request.\n"
	    "# TYPE jiayin_transcodes_not_stored_total counter\n"
	    "jiayin_transcodes_not_stored_total %llu\n"
	    "# HELP jiayin_retention_deleted_total Messages deleted for being past their family's "
	    "retention period.\n"
	    "# TYPE jiayin_retention_deleted_total counter\njiayin_retention_deleted_total %llu\n"
	    "# HELP jiayin_buffer_bytes Bytes of stream and upload buffers reserved now.\n"
	    "# TYPE jiayin_buffer_bytes gauge\njiayin_buffer_bytes %llu\n"
	    "# HELP jiayin_upload_buffer_bytes Of those, the bytes upload bodies hold.\n"
	    "# TYPE jiayin_upload_buffer_bytes gauge\njiayin_upload_buffer_bytes %llu\n"
	    "# HELP jiayin_buffers_refused_total Requests answered 503 busy for want of a stream "
	    "or upload buffer: none left (memory), their client's share in use (client: a "
	    "device's, or an address's without one), their address's in use (address), or the "
	    "uploads' part of buffer memory in use (uploads).\n"
	    "# TYPE jiayin_buffers_refused_total counter\n"
	    "jiayin_buffers_refused_total{reason=\"memory\"} %llu\n"
	    "jiayin_buffers_refused_total{reason=\"client\"} %llu\n"
	    "jiayin_buffers_refused_total{reason=\"address\"} %llu\n"
	    "jiayin_buffers_refused_total{reason=\"uploads\"} %llu\n"
	    "# HELP jiayin_uploads_refused_disk_total Uploads refused (507 storage_full) because "
	    "unfinished uploads reached the data disk's reserve (upload-disk-reserve).\n"
	    "# TYPE jiayin_uploads_refused_disk_total counter\njiayin_uploads_refused_disk_total "
	    "%llu\n",
	    s->open_conns, (unsigned long long)m->connections_total,
	    (unsigned long long)m->connections_refused, s->active_jobs, s->heavy_queued,
	    s->heavy_reserved_count, s->upload_retries_waiting, (unsigned long long)m->jobs_refused,
	    (unsigned long long)m->bytes_in, (unsigned long long)m->bytes_out,
	    (unsigned long long)m->parse_errors, (unsigned long long)m->storage_errors,
	    (unsigned long long)m->audit_failures, (unsigned long long)m->families_set_aside,
	    m->transcode_seconds, (unsigned long long)m->transcodes,
	    (unsigned long long)m->transcodes_not_stored, (unsigned long long)m->retention_deleted,
	    (unsigned long long)s->buffer_bytes, (unsigned long long)s->upload_buffer_bytes,
	    (unsigned long long)m->buffers_refused_memory,
	    (unsigned long long)m->buffers_refused_client,
	    (unsigned long long)m->buffers_refused_address,
	    (unsigned long long)m->buffers_refused_uploads,
	    (unsigned long long)m->uploads_refused_disk);
	if (o.failed) {
		free(o.p);
		return NULL;
	}
	*len = o.len;
	return o.p;
}
