/*
 * jiayinctl.h — what the parts of jiayinctl share: jiayinctl.c (the command line, the command
 * table, opening the store, and how every command reports, prints rows and writes the audit
 * log), jiayinctl_school.c (schools, kiosks and device tokens) and jiayinctl_family.c (a
 * family's state, erasure and export, backups, and the check of stored voices). Private to
 * tools/; single-threaded.
 */
#ifndef JIAYIN_TOOLS_JIAYINCTL_H
#define JIAYIN_TOOLS_JIAYINCTL_H

#include "store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EXIT_FAIL 1
#define EXIT_USAGE 64

typedef struct ctl {
	store *s;
	bool json;
	const char *data; /* the data directory */
} ctl;

/* ---- reporting (each returns the command's exit status) ---- */

/* A failure: the message and the storage error's code on stderr; with --json, the error object
 * on stdout. EXIT_FAIL. */
int fail(ctl *c, int err, const char *fmt, ...);
/* Bad usage: the message, the usage line when `usage` is not NULL, EXIT_USAGE. */
int usage_fail(ctl *c, const char *usage, const char *fmt, ...);
/* {"error": {"code": ..., "message": ...}} on stdout. */
void print_error_json(const char *code, const char *msg);
/* A command's end: takes `obj` (printed with --json; NULL when it could not be built). */
int finish(ctl *c, json_t *obj, int audit_rc);
/* The same for a command that failed (rc < 0, said in msg) after its result was made: the
 * result with its "error", the message on stderr, exit status 1. rc 0: finish(c, obj, 0). */
int finish_failed(ctl *c, json_t *obj, int rc, const char *msg);

/* ---- rows as JSON and as text ---- */

json_t *jtext(const char *s);
json_t *jtime(int64_t ms);
/* A lock's end (a child's, a kiosk's hour of wrong PINs) to the second it is over by, as the
 * server's kiosk screen shows it: rounded up. */
int64_t lock_end_second(int64_t ms);
const char *opt_id(const store_id *id);
const char *fmt_time(int64_t ms, char buf[32]);
void print_name(const char *s);
/* s into buf (cap bytes, cut short to fit) with control bytes as '?', as print_name shows
 * them: for stored or typed bytes inside a message. Returns buf. */
const char *mask_name(char *buf, size_t cap, const char *s);
/* fflush(stdout): 0, or -1 once any output failed (the first failure's errno is kept for the
 * message at the end of the run). */
int flush_output(void);
json_t *device_json(const store_device *d);
json_t *link_json(const store_kiosk_link *l);
void print_device(const store_device *d, const char *indent);

/* ---- listings, the clock, the audit log, errno ---- */

/* One of the store's listings under a common signature, for list_all(). */
typedef int (*list_fn)(store *s, const char *key, void *out, size_t max, size_t *n);
/* Every row fn lists, in *out (the caller frees it). */
int list_all(store *s, list_fn fn, const char *key, size_t size, void **out, size_t *n);
int64_t now_ms(void);
/* A row in the audit log, actor "jiayinctl"; 0 or a negative storage code. */
int audit(ctl *c, const char *action, const char *family_id, const char *target,
          const char *detail);
int errno_code(int e);

/* ---- the commands: argv holds their arguments, as many as the command table allows ---- */

/* jiayinctl_school.c */
int cmd_school_add(ctl *c, int argc, char **argv);
int cmd_school_list(ctl *c, int argc, char **argv);
int cmd_kiosk_add(ctl *c, int argc, char **argv);
int cmd_kiosk_token(ctl *c, int argc, char **argv);
int cmd_kiosk_list(ctl *c, int argc, char **argv);
int cmd_kiosk_children(ctl *c, int argc, char **argv);
int cmd_kiosk_unlock(ctl *c, int argc, char **argv);
int cmd_device_revoke(ctl *c, int argc, char **argv);

/* jiayinctl_family.c */
int cmd_family_show(ctl *c, int argc, char **argv);
int cmd_family_delete(ctl *c, int argc, char **argv);
int cmd_family_export(ctl *c, int argc, char **argv);
int cmd_backup(ctl *c, int argc, char **argv);
int cmd_backup_family(ctl *c, int argc, char **argv);
int cmd_verify(ctl *c, int argc, char **argv);

#endif
