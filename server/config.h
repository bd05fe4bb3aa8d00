/*
 * config.h — the jiayin server's settings: defaults, the config file, the command line.
 *
 * Every setting has one entry in a table (config.c): its name, which is both the config file
 * key and the long option (`--name VALUE`), its range and its help line, so `--help`, the file
 * and the flags can never disagree. Loaded once at start on the main thread, then read only.
 */
#ifndef JIAYIN_SERVER_CONFIG_H
#define JIAYIN_SERVER_CONFIG_H

#include "http_limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SRV_MAX_TRUSTED_PROXIES 16

typedef enum { SRV_LOG_JSON, SRV_LOG_LOGFMT } srv_log_format;

/* A file's identity and last change as stat() gives them. */
typedef struct srv_file_stamp {
	uint64_t dev, ino;
	int64_t size, mtime_ns, ctime_ns;
} srv_file_stamp;
/* path's stamp now; 0, or -errno. */
int srv_file_stamp_read(const char *path, srv_file_stamp *out);

typedef struct srv_config {
	char listen_host[256];
	uint16_t listen_port;
	char data_dir[1024];
	char log_file[1024]; /* empty: stderr */
	char static_dir[1024]; /* the web client's files; empty: none */
	srv_log_format log_format;
	srv_limits http;                 /* parser limits (http_limits.h) */
	unsigned max_connections;        /* beyond: 503 and close */
	unsigned max_requests_per_conn;  /* then Connection: close */
	unsigned head_timeout_ms;        /* first byte to end of head (slowloris) */
	unsigned body_idle_ms;           /* longest silence inside a body */
	unsigned keepalive_ms;           /* idle between requests */
	unsigned write_timeout_ms;       /* a response's client takes under write_min_rate this
					    long (nothing, at 0): it is cut */
	unsigned write_min_rate;         /* bytes/s a response's client must take, over that */
	unsigned shutdown_grace_ms;      /* SIGTERM: in-flight work gets this long */
	unsigned max_queued_jobs;        /* blocking jobs queued or running; beyond: 503 */
	unsigned max_heavy_jobs;         /* transcodes and exports queued or running; beyond: 503 */
	unsigned health_interval_ms;     /* how often storage is checked for /healthz */
	unsigned threads;                /* the job pool (libuv's thread pool) */
	uint64_t buffer_memory;          /* bytes of stream and upload buffers at once */
	unsigned buffers_per_client;     /* of those buffers, how many one client holds: a device
					    (srv_buffer_owner), else an address */
	unsigned buffers_per_address;    /* how many one address holds, its devices' together */
	unsigned upload_buffer_percent;  /* of buffer_memory, how much upload bodies may hold */
	unsigned body_min_rate;          /* bytes/s a body must average over body_rate_window_ms */
	unsigned body_rate_window_ms;    /* the window body_min_rate is measured over */
	unsigned signups_per_hour;       /* new families per client address and hour */
	unsigned pair_failures;          /* wrong codes per address per 15 min before a lock */
	unsigned pair_failures_all;      /* wrong codes from anywhere per 15 min before a lock */
	unsigned upload_expiry_s;        /* a resumable upload lives this long after its last change */
	unsigned upload_start_expiry_s;  /* the same for one that received nothing, when shorter */
	unsigned uploads_per_device;     /* unfinished resumable uploads one device may hold */
	unsigned long_polls_per_device;  /* long-polls one token may have waiting at once */
	unsigned audio_url_ttl_s;         /* lifetime of a signed audio URL */
	uint64_t family_quota;            /* audio bytes per family: the default and the ceiling */
	uint64_t family_upload_bytes;     /* bytes a family's unfinished uploads may hold at most */
	uint64_t upload_disk_reserve;     /* disk bytes unfinished uploads leave free */
	unsigned retention_interval_s;    /* between runs of the retention job */
	unsigned kiosk_idle_s;            /* a child's kiosk session ends after this idle time */
	unsigned pin_failures;            /* wrong kiosk PINs before the login locks */
	unsigned pin_lock_s;              /* and for how long */
	unsigned pin_failures_kiosk;      /* wrong PINs per kiosk (all its tablets) an hour: a lock */
	unsigned pin_sets_per_hour;       /* new kiosk PINs per family per hour (each an Argon2) */
	unsigned pairings_per_hour;       /* phones paired into a family per hour (POST /v1/pair) */
	/* Proxies whose X-Forwarded-For / -Proto are believed (IPv4 or IPv6 literals). */
	char trusted_proxies[SRV_MAX_TRUSTED_PROXIES][46];
	unsigned trusted_proxy_count;
	/* The config file read (--config; "" when none) as it was then: SIGHUP, which reopens
	 * the log only, tells an operator who changed it (systemctl reload) that it waits for a
	 * restart. */
	char config_file[1024];
	srv_file_stamp config_stamp;
} srv_config;

#define SRV_CONFIG_FILE_MAX (1u << 20) /* bytes of a config file */
#define SRV_CONFIG_LINE_MAX 2047       /* bytes of one of its lines, without the newline */

void srv_config_defaults(srv_config *c);
/*
 * Applies the `SETTING = VALUE` lines of text[0..len) ('#' starts a comment; blank lines, spaces
 * around both sides, CRLF line ends and a UTF-8 byte-order mark are allowed; a setting given twice
 * is not). Stops at the first bad line: -1 with "NAME:LINE: why" in err (NAME: the file's name);
 * else 0.
 */
int srv_config_parse(srv_config *c, const char *text, size_t len, const char *name, char *err,
                     size_t errlen);
/* srv_config_parse() on the file at path (at most SRV_CONFIG_FILE_MAX bytes). */
int srv_config_load(srv_config *c, const char *path, char *err, size_t errlen);
/* Every setting as a config file line, the way srv_config_parse() reads it back. */
void srv_config_print(const srv_config *c, FILE *out);
/* One setting by name. 0, or -1 with a message in err. */
int srv_config_set(srv_config *c, const char *key, const char *value, char *err, size_t errlen);
/*
 * The command line: --config FILE is applied first, then the other flags over it. Returns 0,
 * 1 when --help or --print-config (the settings in effect) was printed (exit 0), -2 when what
 * it printed could not be written (exit 74), or -1 (exit 64); with a message in err for both.
 */
int srv_config_from_args(srv_config *c, int argc, char **argv, char *err, size_t errlen);
void srv_config_usage(FILE *out);

#endif
