/*
 * api_family.c — a family as a whole: its settings (retention period, quota) and usage, its
 * members' names and avatars and their leaving, its phones, the parent's download of
 * everything (a zip made by storage into data/tmp and streamed), erasing the family, and the
 * retention job that deletes messages past their family's period.
 *
 * A family has one export at a time, made or downloaded: each is a zip of up to the family's
 * quota in data/tmp, so sixteen at once of a 1 GiB family held 16 GiB of disk (the review).
 * The mark is taken on the loop once a job has found the caller a parent (so nobody else's
 * requests keep it from the parents), and given back when the download is over.
 *
 * The retention job runs every retention-interval-s on the pool, a slice at a time: at most
 * RETENTION_BUDGET deletions per job (each its own durable transaction), then the loop queues
 * the next slice at once, so a drain never waits long for it and the write locks are never
 * held for long. Waiting devices of a family whose messages went are woken like for any change.
 */
#include "api_internal.h"
#include "static.h"
#include "upload_state.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RETENTION_DAYS_MAX 3650
#define DAY_MS (24 * 3600 * 1000LL)

static const char only_parent[] = "only a parent of the family can do this";

/* The path's member ({member_id}) of the path's family, the caller's own; else false, with
 * j->rc set (another family's member, a former one, an unknown id: not found). */
static bool path_member(api_job *j, store_member *target)
{
	if (!api_own_family(j))
		return false;
	if ((j->rc = store_member_get(j->st, j->param[1], target)) == 0 &&
	    strcmp(target->family_id.s, j->param[0]) != 0)
		j->rc = STORE_ENOTFOUND;
	return j->rc == 0;
}

/* ---- PATCH /v1/families/{family_id}/members/{member_id} ---- */
/*
 * A parent changes anyone's name or avatar; a caregiver anyone's but a parent's; a child only
 * its own avatar (the picture it finds itself by at a kiosk). Another family's member: 404.
 */
static void member_set_work(api_job *j)
{
	store_member target;
	if (!path_member(j, &target))
		return;
	bool self = strcmp(target.id.s, j->member.id.s) == 0;
	if ((j->member.role == STORE_ROLE_CAREGIVER && target.role == STORE_ROLE_PARENT) ||
	    (j->member.role == STORE_ROLE_CHILD && (!self || j->set_name))) {
		j->rc = 1;
		return;
	}
	if (!(j->members = calloc(1, sizeof *j->members))) {
		j->rc = STORE_ENOMEM;
		return;
	}
	if ((j->rc = store_member_update(j->st, j->param[0], j->param[1],
	                                 j->set_name ? j->member_name : NULL,
	                                 j->set_avatar ? j->device_name : NULL, j->members)) < 0)
		return;
	api_audit(j, api_now_ms(), "member.update", j->param[0], j->param[1],
	          j->set_name && j->set_avatar ? "name avatar"
	          : j->set_name                ? "name"
	                                       : "avatar");
}

static void member_set_done(srv_exchange *x, api_job *j)
{
	if (api_failed(x, j,
	               "a parent changes any member, a caregiver any but a parent, a child only "
	               "its own avatar"))
		return;
	api_respond_json(x, 200, json_pack("{s:o}", "member", api_member_json(j->members)));
}

void srv_api_member_set(srv_exchange *x)
{
	if (!api_bearer_present(x))
		return;
	json_t *body = api_body_object(x);
	if (!body)
		return;
	json_t *nv = json_object_get(body, "member_name"), *av = json_object_get(body, "avatar");
	const char *name = nv ? api_name_field(body, "member_name", true) : NULL;
	const char *avatar = av ? api_avatar_field(body) : NULL; /* as when it was added */
	size_t known = (nv != NULL) + (av != NULL);
	const char *err = known == 0 || json_object_size(body) != known ? "invalid_setting"
	                  : nv && !name                                 ? "invalid_name"
	                  : av && !avatar                               ? "invalid_avatar"
	                                                                : NULL;
	api_job *j = err ? NULL : api_authed_job(x, member_set_work, member_set_done);
	if (j) {
		j->set_name = nv != NULL;
		j->set_avatar = av != NULL;
		if (name)
			snprintf(j->member_name, sizeof j->member_name, "%s", name);
		if (avatar)
			snprintf(j->device_name, sizeof j->device_name, "%s",
			         avatar); /* the avatar */
	}
	json_decref(body);
	if (err)
		srv_respond_error(
		    x, 400, err,
		    strcmp(err, "invalid_name") == 0     ? "member_name: 1-64 bytes of text"
		    : strcmp(err, "invalid_avatar") == 0 ? "avatar: up to 31 bytes"
		                                         : "send member_name and/or avatar, "
		                                           "nothing else");
	else if (j)
		api_run(x, j);
}

/* ---- GET /v1/families/{family_id}/devices: the phones that open the family's voices ---- */
static void devices_work(api_job *j)
{
	if (!api_grown_up(j))
		return;
	if (!(j->devices = calloc(STORE_MEMBER_ROWS_MAX, sizeof *j->devices))) {
		j->rc = STORE_ENOMEM;
		return;
	}
	j->rc = store_devices_active(j->st, j->param[0], j->devices, STORE_MEMBER_ROWS_MAX,
	                             &j->ndevices);
}

static void devices_done(srv_exchange *x, api_job *j)
{
	if (api_failed(x, j, "a parent or caregiver sees the family's phones"))
		return;
	json_t *list = json_array();
	for (size_t i = 0; list && i < j->ndevices; i++) {
		const store_device *d = &j->devices[i];
		json_t *o = api_device_json(d);
		if (json_object_set_new(o, "member_id", json_string(d->member_id.s)) < 0)
			json_decref(o), o = NULL;
		if (json_array_append_new(list, o) < 0) /* o NULL too: no memory, no answer */
			json_decref(list), list = NULL;
	}
	api_respond_json(x, 200, list ? json_pack("{s:o}", "devices", list) : NULL);
}

void srv_api_devices_list(srv_exchange *x)
{
	api_start(x, devices_work, devices_done);
}

/* ---- DELETE /v1/families/{family_id}/members/{member_id}: a member leaves ---- */
/*
 * A parent removes any member, a caregiver only itself (it leaves), a child nobody; the last
 * parent stays (409). Its phones and kiosk links go with it in the storage's transaction, its
 * unfinished recordings after. A parent's removal of a member gone already (its answer lost and
 * sent again, two parents at once) is answered 204 as it was the first time, and nothing is
 * done or audited again: a 404 told the app the member it had just removed did not exist.
 */
static void member_remove_work(api_job *j)
{
	store_member target;
	bool parent = !j->session && j->member.role == STORE_ROLE_PARENT;
	if (!api_own_family(j))
		return; /* another family's: nothing of it is looked at */
	if (!path_member(j, &target) && !(j->rc == STORE_ENOTFOUND && parent))
		return; /* not a member now, and no parent's: not found */
	bool self = j->rc == 0 && strcmp(target.id.s, j->member.id.s) == 0;
	if (!parent && (j->session || j->member.role == STORE_ROLE_CHILD || !self)) {
		j->rc = 1;
		return;
	}
	int64_t now = api_now_ms();
	/* Not a member now: storage tells a former one of this family (1) from none (404). */
	if ((j->rc = store_member_remove(j->st, j->param[0], j->param[1], now, &target)) < 0)
		return;
	if (j->rc == 1) { /* removed already: its first removal stands, audited once */
		j->rc = 0;
		return;
	}
	unsigned removed;
	srv_upload_remove_member(j->upload_dir, target.id.s, &removed); /* else: expiry */
	api_audit(j, now, "member.remove", j->param[0], target.id.s, self ? "left" : NULL);
}

static void member_remove_done(srv_exchange *x, api_job *j)
{
	if (j->rc == STORE_ELIMIT) {
		srv_respond_error(
		    x, 409, "last_parent",
		    "a family keeps a parent with a phone: pair another parent's phone first");
		return;
	}
	if (api_failed(x, j, "a parent removes a member; a caregiver may leave, a child may not"))
		return;
	/* Its phones waiting on a long-poll are authenticated again, and hear 401 now. */
	api_mailbox_changed(x->srv, j->param[0]);
	srv_respond_head(x, 204, NULL, NULL, -1);
}

void srv_api_member_remove(srv_exchange *x)
{
	api_job *j = api_authed_job(x, member_remove_work, member_remove_done);
	if (!j)
		return;
	j->upload_dir = x->srv->uploads->dir;
	api_run(x, j);
}

/* ---- GET and PATCH /v1/families/{family_id} ---- */
static void get_work(api_job *j)
{
	if (!api_own_family(j))
		return;
	if ((j->rc = store_family_get(j->st, j->param[0], &j->family)) == 0)
		j->rc = store_mailbox_usage(j->st, j->param[0], &j->usage);
	if (j->family.quota_bytes == 0) /* stored before quotas were set: the server's */
		j->family.quota_bytes = j->default_quota;
}

static void settings_done(srv_exchange *x, api_job *j)
{
	if (api_failed(x, j, only_parent))
		return;
	const store_family *f = &j->family;
	api_respond_json(x, 200, json_pack("{s:{s:s, s:s, s:I, s:I, s:I, s:I}}", "family", "id",
					   f->id.s, "name", f->name, "created_at",
					   (json_int_t)(f->created_ms / 1000), "retention_days",
					   (json_int_t)f->retention_days, "quota_bytes",
					   (json_int_t)f->quota_bytes, "usage_bytes",
					   (json_int_t)j->usage));
}

void srv_api_family_get(srv_exchange *x)
{
	api_start(x, get_work, settings_done);
}

static void set_work(api_job *j)
{
	if (!api_parent(j))
		return;
	/* The answer is the family with its usage: a mailbox that cannot tell it (damaged: 503
	 * storage_corrupt) is told before the change, which is then not made (the review: it was
	 * made and audited, then answered 503, and each retry audited it again). */
	if ((j->rc = store_mailbox_usage(j->st, j->param[0], &j->usage)) < 0)
		return;
	/* The family as changed, from the statement that changes it: read after it, a read that
	 * failed was answered 503 with the change made and audited, and the app's retry audited
	 * it again (review finding). Nothing is read after the change. */
	if ((j->rc =
	         store_family_update(j->st, j->param[0], j->set_quota ? &j->quota : NULL,
	                             j->set_retention ? &j->retention_days : NULL, &j->family)) < 0)
		return;
	if (j->family.quota_bytes == 0) /* stored before quotas were set: the server's */
		j->family.quota_bytes = j->default_quota;
	char detail[96] = "";
	if (j->set_retention)
		snprintf(detail, sizeof detail, "retention_days=%u ", j->retention_days);
	if (j->set_quota)
		snprintf(detail + strlen(detail), sizeof detail - strlen(detail),
			 "quota_bytes=%llu", (unsigned long long)j->quota);
	api_audit(j, api_now_ms(), "family.settings", j->param[0], NULL, detail);
}

/* A whole number in [lo, hi] from the body; -1 if present and not one, 0 if absent, 1 set. */
static int number_field(json_t *body, const char *key, json_int_t lo, json_int_t hi,
			json_int_t *out)
{
	json_t *v = json_object_get(body, key);
	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return -1;
	*out = json_integer_value(v);
	return 1;
}

void srv_api_family_set(srv_exchange *x)
{
	if (!api_bearer_present(x))
		return;
	json_t *body = api_body_object(x);
	if (!body)
		return;
	json_int_t days = 0, quota = 0;
	int has_days = number_field(body, "retention_days", 0, RETENTION_DAYS_MAX, &days);
	int has_quota = number_field(body, "quota_bytes", 1,
				     (json_int_t)x->srv->cfg.family_quota, &quota);
	size_t known = (has_days == 1) + (has_quota == 1);
	bool ok = has_days >= 0 && has_quota >= 0 && known > 0 && json_object_size(body) == known;
	json_decref(body);
	if (!ok) {
		char msg[160];
		snprintf(msg, sizeof msg,
			 "send retention_days (0-%d, 0: keep for ever) and/or quota_bytes "
			 "(1-%llu)",
			 RETENTION_DAYS_MAX, (unsigned long long)x->srv->cfg.family_quota);
		srv_respond_error(x, 400, "invalid_setting", msg);
		return;
	}
	api_job *j = api_authed_job(x, set_work, settings_done);
	if (!j)
		return;
	j->set_retention = has_days == 1;
	j->retention_days = (uint32_t)days;
	j->set_quota = has_quota == 1;
	j->quota = (uint64_t)quota;
	api_run(x, j);
}

/* ---- DELETE /v1/families/{family_id}: every voice of the family, erased ---- */
static void delete_work(api_job *j)
{
	if (!api_parent(j))
		return;
	if ((j->rc = store_family_delete(j->st, j->param[0], api_now_ms())) == 0) {
		/* Its unfinished recordings go too, on its phones and on the school kiosks its
		 * children used (data/uploads/DEVICE, by the family their records name). */
		unsigned removed;
		srv_upload_remove_family(j->upload_dir, j->param[0], &removed); /* else: expiry */
		api_audit(j, api_now_ms(), "family.delete", j->param[0], NULL, NULL);
	}
}

static void delete_done(srv_exchange *x, api_job *j)
{
	if (api_failed(x, j, only_parent))
		return;
	api_mailbox_changed(x->srv, j->param[0]); /* its waiting devices hear 401 now */
	srv_respond_head(x, 204, NULL, NULL, -1);
}

void srv_api_family_delete(srv_exchange *x)
{
	api_job *j = api_authed_job(x, delete_work, delete_done);
	if (!j)
		return;
	j->upload_dir = x->srv->uploads->dir;
	api_run(x, j);
}

/* ---- GET /v1/families/{family_id}/export: a zip of the family's audio and an index ---- */
/* A family's export, from its parent's check until its download is over (s->exports). */
struct api_export {
	struct api_export *next;
	srv_server *s;
	char family[STORE_ID_LEN + 1];
};

static bool export_held(const srv_server *s, const char *family)
{
	for (const struct api_export *e = s->exports; e; e = e->next)
		if (strcmp(e->family, family) == 0)
			return true;
	return false;
}

void api_export_release(struct api_export *e)
{
	if (!e)
		return;
	for (struct api_export **pp = &e->s->exports; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	free(e);
}

/* A message whose audio could not be read (a failing disk, a damaged page): left out of the
 * parent's zip, listed in its index.json, and counted for the operator. */
static void export_left_out(void *arg, int64_t row, const char *message_id, int why)
{
	(void)row, (void)message_id, (void)why;
	((api_job *)arg)->left_out++;
}

static void export_work(api_job *j)
{
	if (!api_parent(j)) /* again: the heavy job may have waited its turn */
		return;
	/* Unnamed: the zip disappears with the response, or with a crash. */
	int fd = open(j->tmp_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		j->rc = errno == ENOSPC ? STORE_EFULL : STORE_EIO;
		return;
	}
	uint64_t bytes;
	/* What can be read is exported, the rest listed: one bad clip failed the whole export,
	 * and a family could take none of its voices away until the operator put a copy back. */
	j->left_out = 0;
	if ((j->rc = store_export_family(j->st, j->param[0], fd, &bytes, export_left_out, j)) < 0) {
		close(fd);
		return;
	}
	j->body_fd = fd;
	j->usage = bytes;
	/* A HEAD is told the zip's length: none of the family's voices leaves the server. */
	if (!j->head_only)
		api_audit(j, api_now_ms(), "family.export", j->param[0], NULL, NULL);
}

/*
 * The zip is read on the pool a chunk at a time, and the phone that asked is asked again at
 * most every EXPORT_RECHECK_MS: once it is revoked, or its member removed (the family erased
 * with it), the download gets no more and the connection is cut (the review: a stolen phone's
 * export of every voice of the family went on for the whole download after the parent revoked
 * it, which on a slow network is many minutes).
 */
#define EXPORT_RECHECK_MS 1000

typedef struct export_source {
	int fd;
	struct api_export *mark; /* the family's: given back with the download */
	store *st;
	uint8_t token_hash[STORE_HASH_LEN];
	store_id member;
	int64_t asked_ms; /* when the phone was last found still the caller's */
} export_source;

static int export_read(void *ctx, uint64_t offset, char *buf, size_t cap, size_t *got)
{
	export_source *e = ctx;
	int64_t now = api_now_ms();
	if (now - e->asked_ms >= EXPORT_RECHECK_MS || now < e->asked_ms) {
		int rc = api_phone_still(e->st, e->token_hash, e->member.s);
		if (rc == STORE_ENOTFOUND)
			return SRV_SOURCE_REFUSED;
		if (rc < 0)
			return rc;
		e->asked_ms = now;
	}
	ssize_t n = pread(e->fd, buf, cap, (off_t)offset);
	if (n < 0)
		return STORE_EIO;
	*got = (size_t)n;
	return 0;
}

static void export_close(void *ctx)
{
	export_source *e = ctx;
	api_export_release(e->mark);
	close(e->fd);
	free(e);
}

/*
 * A family's zip of size bytes, with disposition[96] its Content-Disposition. Made afresh by
 * each request: a range of it is of another zip than the part the client has; without
 * If-Range (`curl -C -`, `wget -c`; with it the weak ETag never matched) the part spliced to
 * the one before made a corrupt zip when a message had been deleted or a member renamed
 * meanwhile (helper-131's review). So the whole zip, always, and its ETag weak and its own.
 */
static void export_entity(const char *family, uint64_t size, char *disposition, srv_entity *e)
{
	snprintf(disposition, 96, "attachment; filename=\"jiayin-%.26s.zip\"", family);
	*e = (srv_entity){.size = size,
	                  .content_type = "application/zip",
	                  .cache_control = "private, no-store",
	                  .disposition = disposition,
	                  .whole_only = true};
	snprintf(e->etag, sizeof e->etag, "W/\"%llx-%llx\"", (unsigned long long)size,
	         (unsigned long long)api_now_ms());
}

static void export_done(srv_exchange *x, api_job *j)
{
	if (api_failed(x, j, only_parent))
		return;
	if (j->left_out && !j->head_only) { /* a HEAD then its GET: told once */
		char what[160];
		snprintf(
		    what, sizeof what,
		    "family %.26s: %u message(s) whose audio could not be read left out of its "
		    "export (jiayinctl verify says which)",
		    j->param[0], j->left_out);
		x->srv->metrics.storage_errors += j->left_out;
		srv_log_event(x->srv, "export_left_out", what);
	}
	char disposition[96];
	srv_entity e;
	export_entity(j->param[0], j->usage, disposition, &e);
	export_source *src = calloc(1, sizeof *src);
	if (!src) {
		close(j->body_fd);
		j->body_fd = -1;
		srv_respond_error(x, 500, "out_of_memory", "no memory");
		return;
	}
	src->fd = j->body_fd;
	src->mark = j->export;
	j->export = NULL;
	src->st = j->st;
	memcpy(src->token_hash, j->token_hash, sizeof src->token_hash);
	src->member = j->member.id;
	src->asked_ms = api_now_ms(); /* export_work was authenticated just now */
	j->body_fd = -1;
	srv_plan plan;
	srv_entity_plan(&x->req, &e, &plan);
	srv_source s = {export_read, export_close, src};
	srv_respond_stream(x, &e, &plan, &s, NULL, 0);
}

static void export_check_work(api_job *j)
{
	api_parent(j);
}

static void export_refused(srv_exchange *x, api_job *j)
{
	api_failed(x, j, only_parent);
}

/*
 * A parent asks: the family's mark, or 429 while another export of the family is made or
 * downloaded (a phone whose download broke off may meet it until the server cuts the stalled
 * response, write-timeout-ms). Then the zip, as a heavy job; the mark goes with its download.
 */
static void export_check_done(srv_exchange *x, void *arg)
{
	api_job *j = arg;
	srv_server *s = x->srv;
	if (j->auth_rc < 0 || j->rc != 0) {
		api_job_done(x, j); /* 401, 403, 404 */
		return;
	}
	/* A precondition the zip cannot meet, whatever it holds (its ETag is its own: only
	 * If-None-Match: * and If-Match: * can match it), is answered before it is made: nothing
	 * of the family is read, and nothing is audited as taken away. */
	char disposition[96];
	srv_entity pre;
	srv_plan plan;
	export_entity(j->param[0], 0, disposition, &pre);
	srv_entity_plan(&x->req, &pre, &plan);
	if (plan.status == 304 || plan.status == 412) {
		api_job_free(j);
		srv_respond_entity(x, &pre, &plan, NULL, NULL, 0);
		return;
	}
	if (export_held(s, j->param[0])) {
		api_job_free(j);
		srv_respond_error_with(x, 429, "export_in_progress",
		                       "this family's export is being made or downloaded; one at a "
		                       "time",
		                       "Retry-After: 30\r\n");
		return;
	}
	struct api_export *e = calloc(1, sizeof *e);
	if (!e) {
		api_job_free(j);
		srv_respond_error(x, 500, "out_of_memory", "no memory");
		return;
	}
	e->s = s;
	snprintf(e->family, sizeof e->family, "%.26s", j->param[0]); /* an id: api_parent */
	e->next = s->exports;
	s->exports = e;
	j->export = e; /* given back by api_job_free, or by the download's end (export_close) */
	j->rc = 0;
	j->work = export_work;
	j->done = export_done;
	api_run_heavy(x, j, j->param[0]); /* a zip of up to the family's quota */
}

void srv_api_family_export(srv_exchange *x)
{
	api_job *j = api_authed_job(x, export_check_work, export_refused);
	if (!j)
		return;
	j->body_fd = -1;
	j->tmp_dir = x->srv->tmp_dir;
	j->head_only = x->head_only;
	api_prepare(x, j);
	if (srv_job_submit(x, api_job_run, export_check_done, j) < 0) {
		api_job_free(j);
		srv_respond_busy(x);
	}
}

/* ---- the retention job ---- */
#define RETENTION_BUDGET 256 /* deletions per slice */
#define RETENTION_PAGE 32    /* families read per slice */

typedef struct retention_job {
	uv_work_t work;
	srv_server *s;
	store_id after; /* the cursor: families with ids after this one */
	int64_t now_ms;
	bool more;
	unsigned deleted;
	int rc;
	size_t nchanged;
	store_id changed[RETENTION_PAGE];
} retention_job;

static void retention_run(uv_work_t *w)
{
	retention_job *r = w->data;
	store_family fams[RETENTION_PAGE];
	size_t n;
	r->more = false;
	/* Each family once a day: its messages go by whole days, and every visit opens its
	 * mailbox (and may close another family's that is in use). */
	if ((r->rc = store_families_retaining(r->s->store, r->after.s, r->now_ms - DAY_MS, fams,
					      RETENTION_PAGE, &n)) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		unsigned budget = RETENTION_BUDGET - r->deleted, got = 0;
		uint64_t seq;
		int rc = store_messages_expire(r->s->store, fams[i].id.s, fams[i].retention_days,
		                               r->now_ms, budget, &got, &seq);
		/* Erased, or its period changed since it was read (a parent's change makes the
		 * family due at once: the next run visits it with the new one): not errors. */
		if (rc < 0 && rc != STORE_ENOTFOUND && rc != STORE_ECHANGED)
			r->rc = rc; /* reported; the other families go on */
		r->deleted += got;
		if (got > 0)
			r->changed[r->nchanged++] = fams[i].id;
		if (got == budget) {
			r->more = true; /* this family may have more: the next slice starts with it */
			return;
		}
		if (rc == 0 &&
		    (rc = store_family_retention_checked(r->s->store, fams[i].id.s,
		                                         fams[i].retention_days, r->now_ms)) < 0)
			r->rc = rc;
		r->after = fams[i].id;
	}
	r->more = n == RETENTION_PAGE;
}

static void retention_start(srv_server *s, const store_id *after);

static void retention_after(uv_work_t *w, int status)
{
	retention_job *r = w->data;
	srv_server *s = r->s;
	(void)status;
	for (size_t i = 0; i < r->nchanged; i++)
		api_mailbox_changed(s, r->changed[i].s);
	s->metrics.retention_deleted += r->deleted;
	if (r->deleted > 0) {
		char detail[64];
		snprintf(detail, sizeof detail, "%u messages past their retention period deleted",
			 r->deleted);
		srv_log_event(s, "retention", detail);
	}
	if (r->rc < 0) {
		s->metrics.storage_errors++;
		srv_log_event(s, "retention_failed", store_errcode(r->rc));
	}
	s->retention_running = false;
	if (r->more && !s->draining)
		retention_start(s, &r->after);
	free(r);
}

static void retention_start(srv_server *s, const store_id *after)
{
	if (s->retention_running || s->draining || !s->store)
		return;
	retention_job *r = calloc(1, sizeof *r);
	if (!r)
		return; /* the next tick tries again */
	r->s = s;
	r->work.data = r;
	r->now_ms = api_now_ms();
	if (after)
		r->after = *after;
	if (uv_queue_work(s->loop, &r->work, retention_run, retention_after) != 0) {
		free(r);
		return;
	}
	s->retention_running = true;
}

static void on_retention_timer(uv_timer_t *t)
{
	retention_start(t->data, NULL);
}

void srv_api_retention_start(srv_server *s)
{
	uint64_t every = (uint64_t)s->cfg.retention_interval_s * 1000;
	/* The first run soon after the start: a server restarted daily still runs it. */
	uv_timer_start(&s->retention_timer, on_retention_timer, every < 60000 ? every : 60000,
		       every);
}
