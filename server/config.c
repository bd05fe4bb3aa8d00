/*
 * config.c — the settings table behind config.h: one row per setting, shared by the config
 * file, the long options and --help. Values are checked against their row's range, so a
 * typo'd or absurd setting stops the server at start with a message naming it.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef enum { T_STRING, T_UINT, T_U64, T_SIZE, T_LISTEN, T_LOGFMT, T_PROXIES } kind;

typedef struct setting {
	const char *name;
	kind type;
	size_t offset;
	size_t size;             /* T_STRING: the buffer size */
	uint64_t min, max;       /* numbers */
	const char *help;
} setting;

#define OFF(f) offsetof(srv_config, f)
#define STR(f) OFF(f), sizeof(((srv_config *)0)->f)

static const setting settings[] = {
	{"listen", T_LISTEN, 0, 0, 0, 0, "HOST:PORT to accept connections on; port 0 picks a free one (127.0.0.1:8080)"},
	{"data", T_STRING, STR(data_dir), 0, 0, "data directory, created on first start (./jiayin-data)"},
	{"log-file", T_STRING, STR(log_file), 0, 0, "request log file, reopened on SIGHUP (stderr)"},
	{"static-dir", T_STRING, STR(static_dir), 0, 0,
	 "directory served at / and /assets/ (the web client; none)"},
	{"log-format", T_LOGFMT, 0, 0, 0, 0, "request log lines: json or logfmt (json)"},
	{"trust-proxy", T_PROXIES, 0, 0, 0, 0,
	 "comma-separated proxy addresses (at most 16), no spaces, whose X-Forwarded-For is "
	 "honoured (none)"},
	{"max-head-bytes", T_SIZE, OFF(http.max_head_bytes), 0, 64, SRV_HEAD_BYTES_CEILING,
	 "request line + headers, bytes (16384; 431 beyond)"},
	{"max-headers", T_SIZE, OFF(http.max_headers), 0, 1, SRV_HEADERS_CEILING,
	 "header lines per request (64; 431 beyond)"},
	{"max-target", T_SIZE, OFF(http.max_target), 0, 16, 65536,
	 "request-target bytes (2048; 414 beyond)"},
	{"max-chunk-bytes", T_U64, OFF(http.max_chunk_bytes), 0, 1, UINT64_C(1) << 40,
	 "declared size of one body chunk (1048576; 413 beyond)"},
	{"max-connections", T_UINT, OFF(max_connections), 0, 1, 1000000,
	 "open connections; beyond, a 503 and close (20000)"},
	{"max-requests-per-connection", T_UINT, OFF(max_requests_per_conn), 0, 1, 1000000,
	 "requests served on one connection before it is closed (1000)"},
	{"head-timeout-ms", T_UINT, OFF(head_timeout_ms), 0, 100, 3600000,
	 "time to receive a request's head (10000)"},
	{"body-idle-ms", T_UINT, OFF(body_idle_ms), 0, 100, 3600000,
	 "longest silence while a body arrives (30000)"},
	{"keepalive-ms", T_UINT, OFF(keepalive_ms), 0, 100, 3600000,
	 "idle time between requests on a kept-alive connection (30000)"},
	{"write-timeout-ms", T_UINT, OFF(write_timeout_ms), 0, 100, 3600000,
	 "a response whose client takes less than write-min-rate for this long is cut (30000)"},
	{"write-min-rate", T_UINT, OFF(write_min_rate), 0, 0, 1u << 30,
	 "bytes/s a response's client must take over write-timeout-ms; 0: any progress (512)"},
	{"shutdown-grace-ms", T_UINT, OFF(shutdown_grace_ms), 0, 0, 3600000,
	 "on SIGTERM/SIGINT, how long in-flight requests may finish (30000)"},
	{"max-queued-jobs", T_UINT, OFF(max_queued_jobs), 0, 1, 100000,
	 "blocking jobs queued or running; beyond, 503 with Retry-After (64)"},
	{"max-heavy-jobs", T_UINT, OFF(max_heavy_jobs), 0, 1, 100000,
	 "transcodes and exports queued or running, apart from those; beyond, 503 (32)"},
	{"health-interval-ms", T_UINT, OFF(health_interval_ms), 0, 100, 3600000,
	 "how often /healthz's storage write runs (1000)"},
	{"threads", T_UINT, OFF(threads), 0, 1, 128,
	 "threads for storage and transcoding work (4)"},
	{"buffer-memory", T_U64, OFF(buffer_memory), 0, 1u << 20, UINT64_C(1) << 40,
	 "bytes of download and upload buffers (16-256 KiB each, as fast as their client) "
	 "held at once; beyond, 503 (67108864)"},
	{"buffers-per-client", T_UINT, OFF(buffers_per_client), 0, 1, 1000000,
	 "of those buffers, how many one client may hold: a signed-in device, else an address; "
	 "beyond, 503 (16)"},
	{"buffers-per-address", T_UINT, OFF(buffers_per_address), 0, 1, 1000000,
	 "how many one address may hold, all its devices together (a school's tablets behind one "
	 "NAT), never fewer than buffers-per-client; beyond, 503 (64)"},
	/* At least 10: 1 % of the smallest buffer-memory (1 MiB) holds no 16 KiB stage at all. */
	{"upload-buffer-percent", T_UINT, OFF(upload_buffer_percent), 0, 10, 100,
	 "percent of buffer-memory upload bodies may hold; the rest is kept for downloads (50)"},
	{"signups-per-hour", T_UINT, OFF(signups_per_hour), 0, 1, 1000000,
	 "new families one client address may create per hour; beyond, 429 (10)"},
	{"pair-failures", T_UINT, OFF(pair_failures), 0, 1, 1000000,
	 "wrong pairing codes from one address in 15 min before it is locked out (10)"},
	{"pair-failures-all", T_UINT, OFF(pair_failures_all), 0, 1, 100000000,
	 "wrong pairing codes from anywhere in 15 min before pairing locks (1000)"},
	{"family-quota", T_U64, OFF(family_quota), 0, 1u << 20, UINT64_C(1) << 50,
	 "bytes of stored audio a new family may keep, and the most a parent may set (1073741824)"},
	{"family-upload-bytes", T_U64, OFF(family_upload_bytes), 0, 1u << 20, UINT64_C(1) << 50,
	 "bytes a family's unfinished uploads may hold; less when its quota's room is small "
	 "(1073741824)"},
	{"upload-disk-reserve", T_U64, OFF(upload_disk_reserve), 0, 0, UINT64_C(1) << 50,
	 "bytes of the data directory's disk that unfinished uploads, all families together, "
	 "leave free for the mailboxes; 0: none (1073741824)"},
	{"retention-interval-s", T_UINT, OFF(retention_interval_s), 0, 1, 7 * 24 * 3600,
	 "how often messages past their family's retention period are deleted, seconds (3600)"},
	{"kiosk-idle-s", T_UINT, OFF(kiosk_idle_s), 0, 10, 24 * 3600,
	 "a child's session at a school kiosk ends after this long unused, seconds (180)"},
	{"pin-failures", T_UINT, OFF(pin_failures), 0, 1, 100,
	 "wrong picture PINs in a row before a child's kiosk login locks (5)"},
	{"pin-lock-s", T_UINT, OFF(pin_lock_s), 0, 1, 7 * 24 * 3600,
	 "how long a locked kiosk login stays locked, seconds (900)"},
	{"pin-failures-kiosk", T_UINT, OFF(pin_failures_kiosk), 0, 1, 1000000,
	 "wrong picture PINs on one kiosk, all its children together, in an hour before its "
	 "logins lock (30)"},
	{"pin-sets-per-hour", T_UINT, OFF(pin_sets_per_hour), 0, 1, 1000000,
	 "new kiosk PINs one family's grown-ups may set in an hour; beyond, 429 (30)"},
	{"pairings-per-hour", T_UINT, OFF(pairings_per_hour), 0, 1, 1000000,
	 "phones paired into one family (new members' or members' new ones) in an hour; "
	 "beyond, 429 (20)"},
	{"audio-url-ttl-s", T_UINT, OFF(audio_url_ttl_s), 0, 1, 7 * 24 * 3600,
	 "how long a signed audio URL plays, seconds (1800)"},
	{"body-min-rate", T_UINT, OFF(body_min_rate), 0, 0, 1u << 30,
	 "bytes/s a request body must average over body-rate-window-ms; 0: no floor (512)"},
	{"body-rate-window-ms", T_UINT, OFF(body_rate_window_ms), 0, 1000, 3600000,
	 "the sliding window body-min-rate is measured over, judged from 10 s on (30000)"},
	{"upload-expiry-s", T_UINT, OFF(upload_expiry_s), 0, 1, 30 * 86400,
	 "a resumable upload is removed this long after its last change, seconds (86400)"},
	{"upload-start-expiry-s", T_UINT, OFF(upload_start_expiry_s), 0, 1, 30 * 86400,
	 "the same for one that has received nothing yet, when shorter, seconds (3600)"},
	{"uploads-per-device", T_UINT, OFF(uploads_per_device), 0, 1, 1000,
	 "unfinished resumable uploads one device may hold; beyond, 429 (8)"},
	{"long-polls-per-device", T_UINT, OFF(long_polls_per_device), 0, 1, 1000000,
	 "long-polls one device may have waiting; a new one answers its oldest at once (4)"},
};
#define SETTINGS (sizeof settings / sizeof settings[0])

void srv_config_defaults(srv_config *c)
{
	memset(c, 0, sizeof *c);
	snprintf(c->listen_host, sizeof c->listen_host, "127.0.0.1");
	c->listen_port = 8080;
	snprintf(c->data_dir, sizeof c->data_dir, "./jiayin-data");
	c->log_format = SRV_LOG_JSON;
	srv_limits_init(&c->http);
	c->max_connections = 20000;
	c->max_requests_per_conn = 1000;
	c->head_timeout_ms = 10000;
	c->body_idle_ms = 30000;
	c->keepalive_ms = 30000;
	c->write_timeout_ms = 30000;
	c->write_min_rate = 512;
	c->shutdown_grace_ms = 30000;
	c->max_queued_jobs = 64;
	c->max_heavy_jobs = 32;
	c->health_interval_ms = 1000;
	c->threads = 4;
	c->buffer_memory = 64u << 20;
	c->buffers_per_client = 16;
	c->buffers_per_address = 64;
	c->upload_buffer_percent = 50;
	c->body_min_rate = 512;
	c->body_rate_window_ms = 30000;
	c->signups_per_hour = 10;
	c->pair_failures = 10;
	c->pair_failures_all = 1000;
	c->audio_url_ttl_s = 1800;
	c->family_quota = UINT64_C(1) << 30;
	c->family_upload_bytes = UINT64_C(1) << 30;
	c->upload_disk_reserve = UINT64_C(1) << 30;
	c->retention_interval_s = 3600;
	c->kiosk_idle_s = 180;
	c->pin_failures = 5;
	c->pin_lock_s = 900;
	c->pin_failures_kiosk = 30;
	c->pin_sets_per_hour = 30;
	c->pairings_per_hour = 20;
	c->upload_expiry_s = 86400;
	c->upload_start_expiry_s = 3600;
	c->uploads_per_device = 8;
	c->long_polls_per_device = 4;
}

static int fail(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
	snprintf(err, errlen, fmt, a, b);
	return -1;
}

static int parse_u64(const char *v, uint64_t *out)
{
	if (*v < '0' || *v > '9')
		return -1;
	errno = 0;
	char *end;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno || *end)
		return -1;
	*out = x;
	return 0;
}

static int set_listen(srv_config *c, const char *v)
{
	const char *colon = strrchr(v, ':');
	uint64_t port;
	if (!colon || parse_u64(colon + 1, &port) < 0 || port > 65535)
		return -1;
	size_t hl = (size_t)(colon - v);
	if (hl >= 2 && v[0] == '[' && v[hl - 1] == ']') /* [::1]:8080 */
		v++, hl -= 2;
	if (hl == 0 || hl >= sizeof c->listen_host)
		return -1;
	char host[256];
	memcpy(host, v, hl);
	host[hl] = 0;
	unsigned char a[16];
	if (inet_pton(AF_INET, host, a) != 1 && inet_pton(AF_INET6, host, a) != 1)
		return -1;
	memcpy(c->listen_host, host, hl + 1);
	c->listen_port = (uint16_t)port;
	return 0;
}

static int set_proxies(srv_config *c, const char *v)
{
	c->trusted_proxy_count = 0;
	while (*v) {
		const char *comma = strchr(v, ',');
		size_t n = comma ? (size_t)(comma - v) : strlen(v);
		char addr[46];
		unsigned char a[16];
		if (c->trusted_proxy_count == SRV_MAX_TRUSTED_PROXIES)
			return -2; /* a good list, too long: said as such */
		if (n == 0 || n >= sizeof addr)
			return -1;
		memcpy(addr, v, n);
		addr[n] = 0;
		if (inet_pton(AF_INET, addr, a) != 1 && inet_pton(AF_INET6, addr, a) != 1)
			return -1;
		memcpy(c->trusted_proxies[c->trusted_proxy_count++], addr, n + 1);
		v += n + (comma ? 1 : 0);
		if (comma && !*v)
			return -1; /* "10.0.0.1,": the address after it cut off? */
	}
	return 0;
}

int srv_config_set(srv_config *c, const char *key, const char *value, char *err, size_t errlen)
{
	const setting *s = NULL;
	for (size_t i = 0; i < SETTINGS; i++)
		if (strcmp(settings[i].name, key) == 0)
			s = &settings[i];
	if (!s)
		return fail(err, errlen, "unknown setting '%s'%s", key, "");
	char *field = (char *)c + s->offset;
	uint64_t x = 0;
	switch (s->type) {
	case T_STRING:
		if (strlen(value) == 0 || strlen(value) >= s->size)
			return fail(err, errlen, "%s: '%s' is empty or too long", key, value);
		for (const char *p = value; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				return fail(err, errlen, "%s: '%s' has a control character", key,
				            value);
		/* What a config file cannot say, a flag may not either: --print-config's
		 * output must read back to the same settings. */
		if (strchr(value, '#') || value[0] == ' ' || value[strlen(value) - 1] == ' ')
			return fail(err, errlen,
			            "%s: '%s' has a '#' or begins or ends with a space", key,
			            value);
		memcpy(field, value, strlen(value) + 1);
		return 0;
	case T_LISTEN:
		if (set_listen(c, value) < 0)
			return fail(err, errlen, "%s: '%s' is not ADDRESS:PORT", key, value);
		return 0;
	case T_LOGFMT:
		if (strcmp(value, "json") == 0)
			c->log_format = SRV_LOG_JSON;
		else if (strcmp(value, "logfmt") == 0)
			c->log_format = SRV_LOG_LOGFMT;
		else
			return fail(err, errlen, "%s: '%s' is neither json nor logfmt", key, value);
		return 0;
	case T_PROXIES:
		switch (set_proxies(c, value)) {
		case 0:
			return 0;
		case -2:
			snprintf(err, errlen, "%s: more than %d addresses", key,
			         SRV_MAX_TRUSTED_PROXIES);
			return -1;
		default:
			return fail(err, errlen, "%s: '%s' is not a list of IP addresses", key, value);
		}
	default:
		break;
	}
	if (parse_u64(value, &x) < 0 || x < s->min || x > s->max)
		return fail(err, errlen, "%s: '%s' is not a number in range", key, value);
	if (s->type == T_UINT)
		*(unsigned *)field = (unsigned)x;
	else if (s->type == T_SIZE)
		*(size_t *)field = (size_t)x;
	else
		*(uint64_t *)field = x;
	return 0;
}

/* One line of the text without its '\n'; the next line's start in *next. */
static size_t line_at(const char *text, size_t len, size_t at, size_t *next)
{
	const char *nl = memchr(text + at, '\n', len - at);
	size_t n = nl ? (size_t)(nl - (text + at)) : len - at;
	*next = at + n + (nl ? 1 : 0);
	return n;
}

int srv_config_parse(srv_config *c, const char *text, size_t len, const char *name, char *err,
                     size_t errlen)
{
	char line[SRV_CONFIG_LINE_MAX + 1];
	size_t at = 0, next;
	unsigned lineno = 0;
	/* The line each setting was given on, 0 for none yet: a setting given twice in one file
	 * is a mistake (an operator who wrote port 8080 near the top and 9090 near the bottom
	 * believes one of them), not a quiet "the last one wins". */
	unsigned given_on[SETTINGS] = {0};
	/* A byte-order mark, as Windows' Notepad writes, is not part of the first key. */
	if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
		at = 3;
	for (; at < len; at = next) {
		lineno++;
		size_t n = line_at(text, len, at, &next);
		char where[32];
		snprintf(where, sizeof where, "%u", lineno);
		if (n == SRV_CONFIG_LINE_MAX + 1 && text[at + n - 1] == '\r')
			n--; /* a CRLF line end is no longer a line than an LF one */
		if (n > SRV_CONFIG_LINE_MAX)
			return fail(err, errlen, "%s:%s: line too long", name, where);
		if (memchr(text + at, 0, n))
			return fail(err, errlen, "%s:%s: NUL byte in the line", name, where);
		memcpy(line, text + at, n);
		line[n] = 0;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		char *k = line;
		while (*k == ' ' || *k == '\t')
			k++;
		char *end = k + strlen(k);
		while (end > k && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
			*--end = 0;
		if (!*k)
			continue;
		char *eq = strchr(k, '=');
		if (!eq)
			return fail(err, errlen, "%s:%s: expected SETTING = VALUE", name, where);
		char *v = eq + 1;
		while (eq > k && (eq[-1] == ' ' || eq[-1] == '\t'))
			eq--;
		*eq = 0;
		while (*v == ' ' || *v == '\t')
			v++;
		for (size_t i = 0; i < SETTINGS; i++) {
			if (strcmp(settings[i].name, k) != 0)
				continue;
			if (given_on[i]) {
				snprintf(err, errlen, "%s:%s: %s given again, first on line %u",
				         name, where, k, given_on[i]);
				return -1;
			}
			given_on[i] = lineno;
		}
		char msg[512];
		if (srv_config_set(c, k, v, msg, sizeof msg) < 0) {
			snprintf(err, errlen, "%s:%s: %s", name, where, msg);
			return -1;
		}
	}
	return 0;
}

int srv_file_stamp_read(const char *path, srv_file_stamp *out)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return -errno;
	*out = (srv_file_stamp){(uint64_t)st.st_dev, (uint64_t)st.st_ino, (int64_t)st.st_size,
	                        (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec,
	                        (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec};
	return 0;
}

int srv_config_load(srv_config *c, const char *path, char *err, size_t errlen)
{
	/* Its stamp before it is read: a change while it is read is one since. */
	if (srv_file_stamp_read(path, &c->config_stamp) == 0)
		snprintf(c->config_file, sizeof c->config_file, "%s", path);
	FILE *f = fopen(path, "rb");
	if (!f)
		return fail(err, errlen, "cannot open config file %s: %s", path, strerror(errno));
	char *text = malloc(SRV_CONFIG_FILE_MAX + 1);
	errno = 0;
	size_t len = text ? fread(text, 1, SRV_CONFIG_FILE_MAX + 1, f) : 0;
	int read_errno = errno; /* a directory opens, and its read fails with EISDIR */
	int rc = 0;
	if (!text)
		rc = fail(err, errlen, "cannot read config file %s: %s", path, strerror(ENOMEM));
	else if (ferror(f))
		rc = fail(err, errlen, "cannot read config file %s: %s", path,
		          strerror(read_errno ? read_errno : EIO));
	else if (len > SRV_CONFIG_FILE_MAX)
		rc = fail(err, errlen, "config file %s: larger than %s", path, "1 MiB");
	else
		rc = srv_config_parse(c, text, len, path, err, errlen);
	free(text);
	fclose(f);
	return rc;
}

/* A setting's value as the config file spells it, or "" when it has none. */
static void format_setting(const srv_config *c, const setting *s, char *out, size_t size)
{
	const char *field = (const char *)c + s->offset;
	size_t at = 0;
	out[0] = 0;
	switch (s->type) {
	case T_STRING:
		snprintf(out, size, "%s", field);
		return;
	case T_LISTEN:
		snprintf(out, size, strchr(c->listen_host, ':') ? "[%s]:%u" : "%s:%u",
		         c->listen_host, (unsigned)c->listen_port);
		return;
	case T_LOGFMT:
		snprintf(out, size, "%s", c->log_format == SRV_LOG_LOGFMT ? "logfmt" : "json");
		return;
	case T_PROXIES:
		for (unsigned i = 0; i < c->trusted_proxy_count && at < size; i++)
			at += (size_t)snprintf(out + at, size - at, "%s%s", i ? "," : "",
			                       c->trusted_proxies[i]);
		return;
	case T_UINT:
		snprintf(out, size, "%u", *(const unsigned *)field);
		return;
	case T_SIZE:
		snprintf(out, size, "%zu", *(const size_t *)field);
		return;
	case T_U64:
		snprintf(out, size, "%" PRIu64, *(const uint64_t *)field);
		return;
	}
}

void srv_config_print(const srv_config *c, FILE *out)
{
	fprintf(out, "# jiayin's settings in effect (jiayin --print-config)\n");
	for (size_t i = 0; i < SETTINGS; i++) {
		/* Room for the longest string setting and for every proxy. */
		_Static_assert(sizeof c->log_file <= sizeof c->data_dir &&
		                   sizeof c->static_dir <= sizeof c->data_dir,
		               "data_dir is the longest string setting");
		char v[sizeof c->data_dir + sizeof c->trusted_proxies];
		format_setting(c, &settings[i], v, sizeof v);
		/* An empty setting (no log file, no proxies) is the default: commented out. */
		if (!*v)
			fprintf(out, "# %s =\n", settings[i].name);
		else
			fprintf(out, "%s = %s\n", settings[i].name, v);
	}
}

void srv_config_usage(FILE *out)
{
	fprintf(out, "usage: jiayin [--config FILE] [--SETTING VALUE]... [--print-config]\n\n"
	             "Jiayin (家音) voice mailbox server. Every setting below may also be given\n"
	             "in the config file as `SETTING = VALUE`; flags override the file.\n\n"
	             "  --config FILE   read settings from FILE first\n"
	             "  --print-config  print the settings in effect, as a config file, and exit\n"
	             "  --help          print this and exit\n");
	for (size_t i = 0; i < SETTINGS; i++)
		fprintf(out, "  --%-28s %s\n", settings[i].name, settings[i].help);
}

/*
 * What --help or --print-config printed reached stdout's file: 1, or -2 with why in err. A full
 * disk under `--print-config > jiayin.conf.new` cut the settings short and still exited 0, and
 * the copy read back with the settings it lost at their defaults.
 */
static int printed(const char *what, char *err, size_t errlen)
{
	if (fflush(stdout) == 0 && !ferror(stdout))
		return 1;
	snprintf(err, errlen, "cannot write %s: %s", what, strerror(errno ? errno : EIO));
	return -2;
}

int srv_config_from_args(srv_config *c, int argc, char **argv, char *err, size_t errlen)
{
	/* The file first, wherever --config appears, so that flags override it. */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			errno = 0;
			srv_config_usage(stdout);
			return printed("the help", err, errlen);
		}
		const char *v = NULL;
		if (strncmp(argv[i], "--config=", 9) == 0)
			v = argv[i] + 9;
		else if (strcmp(argv[i], "--config") == 0) {
			if (i + 1 >= argc)
				return fail(err, errlen, "--config needs a file%s%s", "", "");
			v = argv[++i];
		}
		if (v && srv_config_load(c, v, err, errlen) < 0)
			return -1;
	}
	bool print = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--print-config") == 0) {
			print = true;
			continue;
		}
		if (strncmp(a, "--", 2) != 0)
			return fail(err, errlen, "unexpected argument '%s'%s", a, "");
		char key[64];
		const char *v;
		const char *eq = strchr(a, '=');
		size_t kl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
		if (kl >= sizeof key)
			return fail(err, errlen, "unknown option '%s'%s", a, "");
		memcpy(key, a + 2, kl);
		key[kl] = 0;
		if (eq)
			v = eq + 1;
		else if (i + 1 < argc)
			v = argv[++i];
		else
			return fail(err, errlen, "option '%s' needs a value%s", a, "");
		if (strcmp(key, "config") == 0)
			continue;
		if (srv_config_set(c, key, v, err, errlen) < 0)
			return -1;
	}
	if (srv_limits_check(&c->http) < 0)
		return fail(err, errlen, "inconsistent HTTP limits (max-target must be under "
					 "max-head-bytes)%s%s", "", "");
	/* An address holds no fewer than one client: a buffers-per-client raised for a school
	 * before buffers-per-address existed keeps its effect. */
	if (c->buffers_per_address < c->buffers_per_client)
		c->buffers_per_address = c->buffers_per_client;
	if (print) {
		errno = 0;
		srv_config_print(c, stdout);
		return printed("the settings", err, errlen);
	}
	return 0;
}
