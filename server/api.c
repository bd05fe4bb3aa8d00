/*
 * api.c — the v1 API's identity endpoints: sign-up (a family, its first parent and this
 * device, with a token), pairing codes and pairing, who am I, a family's members, revoking a
 * device.
 *
 * Every request runs one job: authentication (the bearer token's SHA-256 looked up among
 * active devices, then compared in constant time) and the endpoint's storage calls, so a
 * request costs one trip to the pool. Tokens are 256 random bits shown once, in base64url; the
 * store keeps only their hash. Someone else's family is answered 404, never 403, so ids cannot
 * be probed. JSON in and out with jansson; names are 1-64 bytes of UTF-8 without control
 * characters.
 */
#include "api.h"
#include "audio.h"
#include "ratelimit.h"

#include "codec.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- JSON ---- */
static void respond_json(srv_exchange *x, int status, json_t *obj)
{
	char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
	json_decref(obj);
	if (!text) {
		srv_respond_error(x, 500, "out_of_memory", "the answer could not be written");
		return;
	}
	srv_respond(x, status, "application/json", "Cache-Control: no-store\r\n", text,
		    strlen(text));
	free(text);
}

/* The request's JSON object, or NULL after answering 400/415. */
static json_t *body_object(srv_exchange *x)
{
	const srv_slice *ct = srv_request_header(&x->req, "Content-Type");
	if (ct && !(ct->len >= 16 && strncasecmp(ct->ptr, "application/json", 16) == 0)) {
		srv_respond_error(x, 415, "unsupported_media_type", "send application/json");
		return NULL;
	}
	json_error_t e;
	json_t *v = x->body ? json_loadb(x->body, x->body_len, JSON_REJECT_DUPLICATES, &e) : NULL;
	if (!v || !json_is_object(v)) {
		json_decref(v);
		srv_respond_error(x, 400, "invalid_json", "the body must be a JSON object");
		return NULL;
	}
	return v;
}

/* A name field: 1..STORE_NAME_MAX bytes of UTF-8 (jansson checked it), no control bytes. */
static const char *name_field(json_t *obj, const char *key, bool required)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return required ? NULL : "";
	const char *s = json_string_value(v);
	if (!s || !*s || json_string_length(v) > STORE_NAME_MAX || strlen(s) != json_string_length(v))
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return NULL;
	return s;
}

static json_t *family_json(const store_family *f)
{
	return json_pack("{s:s, s:s}", "id", f->id.s, "name", f->name);
}

static json_t *member_json(const store_member *m)
{
	return json_pack("{s:s, s:s, s:s, s:s}", "id", m->id.s, "name", m->name, "role",
			 store_role_name(m->role), "avatar", m->avatar);
}

static json_t *device_json(const store_device *d)
{
	json_t *seen = d->last_seen_ms ? json_integer(d->last_seen_ms / 1000) : json_null();
	return json_pack("{s:s, s:s, s:s, s:I, s:o}", "id", d->id.s, "name", d->name, "kind",
			 d->kind == STORE_DEVICE_KIOSK ? "kiosk" : "personal", "created_at",
			 (json_int_t)(d->created_ms / 1000), "last_seen_at", seen);
}

static void storage_failed(srv_exchange *x, int rc)
{
	if (rc == STORE_ENOTFOUND) {
		srv_respond_error(x, 404, "not_found", "no such thing here");
		return;
	}
	if (rc == STORE_EINVAL) {
		srv_respond_error(x, 400, "invalid_argument", store_strerror(rc));
		return;
	}
	x->srv->metrics.storage_errors++;
	srv_respond_error_with(x, rc == STORE_EFULL ? 507 : 503, store_errcode(rc),
			       store_strerror(rc), "Retry-After: 5\r\n");
}

/* ---- one job per request: who is asking, then the endpoint's own work ---- */
#define PAIRING_CODE_MAX 16
#define MEMBERS_MAX 64 /* a family's members in one answer */

typedef struct api_job api_job;
typedef void (*api_work_fn)(api_job *j);
typedef void (*api_done_fn)(srv_exchange *x, api_job *j);

struct api_job {
	store *st;
	bool authed;                   /* a token was presented */
	uint8_t token_hash[STORE_HASH_LEN];
	store_device device;           /* the caller */
	store_member member;           /* the caller's member (personal devices) */
	int auth_rc;
	api_work_fn work;
	api_done_fn done;
	int rc;
	char param[2][64];             /* path parameters, NUL-terminated */
	/* endpoint data */
	char family_name[STORE_NAME_MAX + 1], member_name[STORE_NAME_MAX + 1];
	char device_name[STORE_NAME_MAX + 1];
	char token[64];
	store_family family;
	store_member *members;         /* members_work: MEMBERS_MAX, freed by job_done */
	size_t nmembers;
	store_device target;
	store_role role;
	int64_t expires_ms;
	char client[46];
	char code[PAIRING_CODE_MAX];
	/* messages */
	int body_fd;
	char to[64];
	char idem[130];
	bool existed;
	codec_result cres;
	int codec_rc;
	double transcode_s;
	store_message msg;
	store_message *list;
	size_t nlist;
	uint64_t since, latest;
	unsigned wait_s;
	char reason[512];
	store_flag *flag;              /* flag_work; freed by job_done */
};

static void job_run(void *arg)
{
	api_job *j = arg;
	if (j->authed) {
		store_device d;
		j->auth_rc = store_device_by_token(j->st, j->token_hash, &d);
		if (j->auth_rc == 0 && d.kind != STORE_DEVICE_PERSONAL)
			j->auth_rc = STORE_ENOTFOUND; /* kiosks speak through kiosk sessions */
		if (j->auth_rc == 0)
			j->device = d;
		if (j->auth_rc == 0)
			j->auth_rc = store_member_get(j->st, d.member_id.s, &j->member);
		if (j->auth_rc == 0)
			store_device_touch(j->st, d.id.s, now_ms()); /* advisory: errors ignored */
		if (j->auth_rc < 0)
			return;
	}
	j->work(j);
}

static void job_done(srv_exchange *x, void *arg)
{
	api_job *j = arg;
	if (j->authed && j->auth_rc < 0) {
		if (j->auth_rc == STORE_ENOTFOUND)
			srv_respond_error_with(x, 401, "unauthorized", "the token is not valid",
					       "WWW-Authenticate: Bearer\r\n");
		else
			storage_failed(x, j->auth_rc);
	} else {
		j->done(x, j);
	}
	sodium_memzero(j->token, sizeof j->token);
	sodium_memzero(j->code, sizeof j->code);
	free(j->members);
	free(j->flag);
	free(j);
}

static void run(srv_exchange *x, api_job *j)
{
	j->st = x->srv->store;
	for (int i = 0; i < 2; i++)
		snprintf(j->param[i], sizeof j->param[i], "%.*s", (int)x->params[i].len,
			 x->params[i].ptr ? x->params[i].ptr : "");
	if (srv_job_submit(x, job_run, job_done, j) < 0) {
		free(j);
		srv_respond_error_with(x, 503, "busy", "the server is busy; try again",
				       "Retry-After: 1\r\n");
	}
}

/* A job for an endpoint that needs a caller: NULL after answering 401. */
static api_job *authed_job(srv_exchange *x, api_work_fn work, api_done_fn done)
{
	const srv_slice *a = srv_request_header(&x->req, "Authorization");
	if (!a || a->len < 8 || strncasecmp(a->ptr, "Bearer ", 7) != 0 || a->len - 7 > 128) {
		srv_respond_error_with(x, 401, "unauthorized", "send Authorization: Bearer TOKEN",
				       "WWW-Authenticate: Bearer\r\n");
		return NULL;
	}
	api_job *j = calloc(1, sizeof *j);
	if (!j) {
		srv_respond_error(x, 500, "out_of_memory", "no memory");
		return NULL;
	}
	j->authed = true;
	j->work = work;
	j->done = done;
	/* Only the hash leaves this function; the store never sees a token. */
	crypto_hash_sha256(j->token_hash, (const unsigned char *)a->ptr + 7, a->len - 7);
	return j;
}

/* ---- POST /v1/families ---- */
static void create_work(api_job *j)
{
	uint8_t raw[SRV_TOKEN_BYTES];
	randombytes_buf(raw, sizeof raw);
	sodium_bin2base64(j->token, sizeof j->token, raw, sizeof raw,
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof raw);
	crypto_hash_sha256(j->token_hash, (const unsigned char *)j->token, strlen(j->token));
	j->rc = store_family_create_with_device(j->st, j->family_name, j->member_name, 0,
						j->token_hash, j->device_name, now_ms(),
						&j->family, &j->member, &j->device);
}

static void create_done(srv_exchange *x, api_job *j)
{
	if (j->rc < 0) {
		storage_failed(x, j->rc);
		return;
	}
	respond_json(x, 201, json_pack("{s:o, s:o, s:o, s:s}", "family", family_json(&j->family),
				       "member", member_json(&j->member), "device",
				       device_json(&j->device), "token", j->token));
}

void srv_api_families_create(srv_exchange *x)
{
	srv_server *s = x->srv;
	json_t *body = body_object(x);
	if (!body)
		return;
	const char *family = name_field(body, "family_name", true);
	const char *member = name_field(body, "member_name", true);
	const char *device = name_field(body, "device_name", false);
	if (!family || !member || !device) {
		json_decref(body);
		srv_respond_error(x, 400, "invalid_name",
				  "family_name and member_name are required: 1-64 bytes of text");
		return;
	}
	/* Only well-formed sign-ups count against the address's hour. */
	if (!srv_rate_take(&s->signup_limit, x->client, uv_now(s->loop))) {
		json_decref(body);
		srv_respond_error_with(x, 429, "rate_limited",
				       "too many new families from this address; try later",
				       "Retry-After: 600\r\n");
		return;
	}
	api_job *j = calloc(1, sizeof *j);
	if (!j) {
		json_decref(body);
		srv_respond_error(x, 500, "out_of_memory", "no memory");
		return;
	}
	snprintf(j->family_name, sizeof j->family_name, "%s", family);
	snprintf(j->member_name, sizeof j->member_name, "%s", member);
	snprintf(j->device_name, sizeof j->device_name, "%s", *device ? device : "phone");
	json_decref(body);
	j->work = create_work;
	j->done = create_done;
	run(x, j);
}

/* ---- GET /v1/me ---- */
static void me_work(api_job *j)
{
	j->rc = store_family_get(j->st, j->device.family_id.s, &j->family);
}

static void me_done(srv_exchange *x, api_job *j)
{
	if (j->rc < 0) {
		storage_failed(x, j->rc);
		return;
	}
	respond_json(x, 200, json_pack("{s:o, s:o, s:o}", "family", family_json(&j->family),
				       "member", member_json(&j->member), "device",
				       device_json(&j->device)));
}

void srv_api_me(srv_exchange *x)
{
	api_job *j = authed_job(x, me_work, me_done);
	if (j)
		run(x, j);
}

/* ---- GET /v1/families/{family_id}/members ---- */
static void members_work(api_job *j)
{
	if (strcmp(j->param[0], j->device.family_id.s) != 0) {
		j->rc = STORE_ENOTFOUND; /* another family: as if it did not exist */
		return;
	}
	if (!(j->members = calloc(MEMBERS_MAX, sizeof *j->members))) {
		j->rc = STORE_ENOMEM;
		return;
	}
	j->rc = store_members_list(j->st, j->param[0], j->members, MEMBERS_MAX, &j->nmembers);
}

static void members_done(srv_exchange *x, api_job *j)
{
	if (j->rc < 0) {
		storage_failed(x, j->rc);
		return;
	}
	json_t *list = json_array();
	for (size_t i = 0; list && i < j->nmembers; i++)
		json_array_append_new(list, member_json(&j->members[i]));
	respond_json(x, 200, list ? json_pack("{s:o}", "members", list) : NULL);
}

void srv_api_members_list(srv_exchange *x)
{
	api_job *j = authed_job(x, members_work, members_done);
	if (j)
		run(x, j);
}

/* ---- DELETE /v1/devices/{device_id} ---- */
static void revoke_work(api_job *j)
{
	j->rc = store_device_get(j->st, j->param[0], &j->target);
	if (j->rc < 0)
		return;
	bool own = strcmp(j->target.id.s, j->device.id.s) == 0;
	bool same_family = j->target.kind == STORE_DEVICE_PERSONAL &&
			   strcmp(j->target.family_id.s, j->device.family_id.s) == 0;
	bool may = own || (same_family && (j->member.role == STORE_ROLE_PARENT ||
					   j->member.role == STORE_ROLE_CAREGIVER));
	if (!same_family && !own) {
		j->rc = STORE_ENOTFOUND;
		return;
	}
	if (!may) {
		j->rc = 1; /* forbidden: a child cannot revoke someone else's phone */
		return;
	}
	j->rc = store_device_revoke(j->st, j->target.id.s, now_ms());
}

static void revoke_done(srv_exchange *x, api_job *j)
{
	if (j->rc == 1) {
		srv_respond_error(x, 403, "forbidden", "only a parent or caregiver can do that");
		return;
	}
	if (j->rc < 0) {
		storage_failed(x, j->rc);
		return;
	}
	srv_respond_head(x, 204, NULL, NULL, -1);
}

void srv_api_device_delete(srv_exchange *x)
{
	api_job *j = authed_job(x, revoke_work, revoke_done);
	if (j)
		run(x, j);
}

/* ---- POST /v1/families/{family_id}/pairing-codes ---- */
#define PAIRING_TTL_MS (10 * 60 * 1000)
#define PAIRING_DIGITS 8

static void code_hash(const char *code, uint8_t h[STORE_HASH_LEN])
{
	crypto_hash_sha256(h, (const unsigned char *)code, strlen(code));
}

static void code_create_work(api_job *j)
{
	if (strcmp(j->param[0], j->device.family_id.s) != 0) {
		j->rc = STORE_ENOTFOUND;
		return;
	}
	if (j->member.role != STORE_ROLE_PARENT && j->member.role != STORE_ROLE_CAREGIVER) {
		j->rc = 1; /* forbidden */
		return;
	}
	int64_t now = now_ms();
	store_pairing p;
	memset(&p, 0, sizeof p);
	memcpy(p.family_id.s, j->device.family_id.s, sizeof p.family_id.s);
	p.role = j->role;
	snprintf(p.member_name, sizeof p.member_name, "%s", j->member_name);
	p.created_ms = now;
	p.expires_ms = j->expires_ms = now + PAIRING_TTL_MS;
	/* Eight digits: a live code colliding with another is unlikely; then draw again. */
	for (int attempt = 0; attempt < 4; attempt++) {
		snprintf(j->token, sizeof j->token, "%08u", (unsigned)randombytes_uniform(100000000));
		uint8_t h[STORE_HASH_LEN];
		code_hash(j->token, h);
		if ((j->rc = store_pairing_create(j->st, h, &p)) != STORE_EEXIST)
			break;
	}
}

static void code_create_done(srv_exchange *x, api_job *j)
{
	if (j->rc == 1) {
		srv_respond_error(x, 403, "forbidden", "only a parent or caregiver can invite");
		return;
	}
	if (j->rc < 0) {
		storage_failed(x, j->rc);
		return;
	}
	respond_json(x, 201, json_pack("{s:s, s:I, s:s, s:s}", "code", j->token, "expires_at",
				       (json_int_t)(j->expires_ms / 1000), "role",
				       store_role_name(j->role), "member_name", j->member_name));
}

void srv_api_pairing_code_create(srv_exchange *x)
{
	json_t *body = body_object(x);
	if (!body)
		return;
	const char *member = name_field(body, "member_name", true);
	const char *role = json_string_value(json_object_get(body, "role"));
	store_role r;
	if (!role || store_role_parse(role, &r) < 0) {
		json_decref(body);
		srv_respond_error(x, 400, "invalid_role", "role is parent, caregiver or child");
		return;
	}
	if (!member) {
		json_decref(body);
		srv_respond_error(x, 400, "invalid_name", "member_name: 1-64 bytes of text");
		return;
	}
	api_job *j = authed_job(x, code_create_work, code_create_done);
	if (j) {
		j->role = r;
		snprintf(j->member_name, sizeof j->member_name, "%s", member);
	}
	json_decref(body);
	if (j)
		run(x, j);
}

/* ---- POST /v1/pair ---- */
static void pair_work(api_job *j)
{
	uint8_t h[STORE_HASH_LEN], raw[SRV_TOKEN_BYTES];
	code_hash(j->code, h);
	randombytes_buf(raw, sizeof raw);
	sodium_bin2base64(j->token, sizeof j->token, raw, sizeof raw,
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof raw);
	crypto_hash_sha256(j->token_hash, (const unsigned char *)j->token, strlen(j->token));
	store_pairing p;
	j->rc = store_pairing_redeem(j->st, h, j->token_hash, j->device_name, now_ms(), &p,
				     &j->member, &j->device);
	if (j->rc == 0)
		j->rc = store_family_get(j->st, p.family_id.s, &j->family);
}

static void pair_done(srv_exchange *x, api_job *j)
{
	srv_server *s = x->srv;
	if (j->rc == STORE_ENOTFOUND) {
		/* A wrong, used or expired code: it counts towards the locks. */
		uint64_t now = uv_now(s->loop);
		srv_rate_take(&s->pair_fail, j->client, now);
		srv_rate_take(&s->pair_fail_all, "*", now);
		srv_respond_error(x, 404, "invalid_code", "the code is wrong, used or expired");
		return;
	}
	if (j->rc < 0) {
		storage_failed(x, j->rc);
		return;
	}
	respond_json(x, 201, json_pack("{s:o, s:o, s:o, s:s}", "family", family_json(&j->family),
				       "member", member_json(&j->member), "device",
				       device_json(&j->device), "token", j->token));
}

void srv_api_pair(srv_exchange *x)
{
	srv_server *s = x->srv;
	uint64_t now = uv_now(s->loop);
	if (srv_rate_exhausted(&s->pair_fail, x->client, now) ||
	    srv_rate_exhausted(&s->pair_fail_all, "*", now)) {
		srv_respond_error_with(x, 429, "pairing_locked",
				       "too many wrong codes; pairing is locked for a while",
				       "Retry-After: 900\r\n");
		return;
	}
	json_t *body = body_object(x);
	if (!body)
		return;
	const char *code = json_string_value(json_object_get(body, "code"));
	const char *device = name_field(body, "device_name", false);
	bool digits = code && strlen(code) == PAIRING_DIGITS;
	for (size_t i = 0; digits && i < PAIRING_DIGITS; i++)
		digits = code[i] >= '0' && code[i] <= '9';
	if (!digits || !device) {
		json_decref(body);
		srv_respond_error(x, 400, digits ? "invalid_name" : "invalid_code",
				  digits ? "device_name: 1-64 bytes of text" : "a code is 8 digits");
		return;
	}
	api_job *j = calloc(1, sizeof *j);
	if (!j) {
		json_decref(body);
		srv_respond_error(x, 500, "out_of_memory", "no memory");
		return;
	}
	j->work = pair_work;
	j->done = pair_done;
	snprintf(j->device_name, sizeof j->device_name, "%s", *device ? device : "phone");
	snprintf(j->client, sizeof j->client, "%s", x->client);
	snprintf(j->code, sizeof j->code, "%s", code);
	json_decref(body);
	run(x, j);
}

/* ---- messages ---- */
#define LIST_MAX 200
#define LONG_POLL_MAX_S 60

static void mailbox_changed(srv_server *s, const char *family_id);

static json_t *message_json(const store_message *m)
{
	if (m->state == STORE_MSG_DELETED)
		return json_pack("{s:s, s:I, s:s}", "id", m->id.s, "seq", (json_int_t)m->seq,
				 "state", "deleted");
	json_t *wave = json_array(), *heard = json_array();
	for (int i = 0; wave && i < STORE_WAVEFORM_POINTS; i++)
		json_array_append_new(wave, json_integer(m->waveform[i]));
	for (unsigned i = 0; heard && i < m->listened_count; i++)
		json_array_append_new(heard, json_string(m->listened_by[i].s));
	return json_pack("{s:s, s:I, s:s, s:o, s:I, s:I, s:I, s:o, s:o, s:s}", "id", m->id.s,
			 "seq", (json_int_t)m->seq, "sender", m->sender.s, "to",
			 m->to.s[0] ? json_string(m->to.s) : json_null(), "created_at",
			 (json_int_t)(m->created_ms / 1000), "duration_ms",
			 (json_int_t)m->duration_ms, "bytes", (json_int_t)m->bytes, "waveform",
			 wave, "listened_by", heard, "state", store_msg_state_name(m->state));
}

/* The caller's family is the one in the path, or it is 404 for them. */
static bool own_family(api_job *j)
{
	if (strcmp(j->param[0], j->device.family_id.s) == 0)
		return true;
	j->rc = STORE_ENOTFOUND;
	return false;
}

static void upload_work(api_job *j)
{
	if (!own_family(j))
		return;
	if (j->to[0]) {
		store_member to;
		j->rc = store_member_get(j->st, j->to, &to);
		if (j->rc == 0 && strcmp(to.family_id.s, j->device.family_id.s) != 0)
			j->rc = STORE_ENOTFOUND;
		if (j->rc == STORE_ENOTFOUND) {
			j->rc = 2; /* no such recipient in this family */
			return;
		}
		if (j->rc < 0)
			return;
	}
	if ((j->rc = store_family_get(j->st, j->device.family_id.s, &j->family)) < 0)
		return;
	codec_source src;
	codec_fd_source fds;
	codec_sink sink;
	codec_buffer out = {0};
	codec_options opt;
	codec_options_init(&opt);
	codec_source_fd(&src, &fds, j->body_fd);
	codec_sink_buffer(&sink, &out);
	uint64_t t0 = uv_hrtime();
	j->codec_rc = codec_transcode(&src, &sink, &opt, &j->cres);
	j->transcode_s = (double)(uv_hrtime() - t0) / 1e9;
	if (j->codec_rc < 0) {
		free(out.data);
		return;
	}
	store_new_message m = {.sender = j->member.id.s,
			       .to = j->to[0] ? j->to : NULL,
			       .created_ms = now_ms(),
			       .duration_ms = j->cres.duration_ms,
			       .lufs = j->cres.output_lufs,
			       .waveform = j->cres.waveform,
			       .audio = out.data,
			       .audio_len = out.len,
			       .idempotency_key = j->idem[0] ? j->idem : NULL,
			       .quota_bytes = j->family.quota_bytes};
	int existed = 0;
	j->rc = store_message_append(j->st, j->device.family_id.s, &m, &j->msg, &existed);
	j->existed = existed;
	free(out.data);
}

static void upload_done(srv_exchange *x, api_job *j)
{
	if (j->rc == 2) {
		srv_respond_error(x, 400, "invalid_recipient", "to: no such member in this family");
		return;
	}
	if (j->rc == 0 && j->codec_rc < 0) {
		bool big = j->codec_rc == CODEC_ETOOLARGE;
		srv_respond_error(x, big ? 413 : 422, codec_errcode(j->codec_rc),
				  codec_strerror(j->codec_rc));
		return;
	}
	if (j->rc == STORE_EQUOTA) {
		srv_respond_error(x, 507, "quota_exceeded", "the family's mailbox is full");
		return;
	}
	if (j->rc < 0) {
		storage_failed(x, j->rc);
		return;
	}
	x->srv->metrics.transcodes++;
	x->srv->metrics.transcode_seconds += j->transcode_s;
	if (!j->existed)
		mailbox_changed(x->srv, j->device.family_id.s);
	respond_json(x, j->existed ? 200 : 201, json_pack("{s:o}", "message",
							  message_json(&j->msg)));
}

void srv_api_message_upload(srv_exchange *x)
{
	const srv_slice *key = srv_request_header(&x->req, "Idempotency-Key");
	if (key && (key->len == 0 || key->len > 128)) {
		srv_respond_error(x, 400, "invalid_idempotency_key", "1-128 characters");
		return;
	}
	if (x->body_fd < 0 || x->body_len == 0) {
		srv_respond_error(x, 422, "audio_truncated", "the request has no audio");
		return;
	}
	char to[64] = "";
	if (x->req.query.ptr) {
		/* ?to=MEMBER_ID, nothing else */
		if (x->req.query.len < 4 || x->req.query.len > 3 + STORE_ID_LEN ||
		    memcmp(x->req.query.ptr, "to=", 3) != 0) {
			srv_respond_error(x, 400, "invalid_recipient", "the query is ?to=MEMBER_ID");
			return;
		}
		snprintf(to, sizeof to, "%.*s", (int)x->req.query.len - 3, x->req.query.ptr + 3);
		if (store_id_check(to) < 0) {
			srv_respond_error(x, 400, "invalid_recipient", "to: not a member id");
			return;
		}
	}
	api_job *j = authed_job(x, upload_work, upload_done);
	if (!j)
		return;
	j->body_fd = x->body_fd; /* read on the pool; the exchange keeps and closes it */
	snprintf(j->to, sizeof j->to, "%s", to);
	if (key)
		snprintf(j->idem, sizeof j->idem, "%.*s", (int)key->len, key->ptr);
	run(x, j);
}

static void list_work(api_job *j)
{
	if (!own_family(j))
		return;
	/* Most long-polls find nothing new: look with room for one before making room for 200. */
	store_message one;
	j->rc = store_messages_since(j->st, j->param[0], j->since, &one, 1, &j->nlist, &j->latest);
	if (j->rc < 0 || j->nlist == 0)
		return;
	j->list = calloc(LIST_MAX, sizeof *j->list);
	if (!j->list) {
		j->rc = STORE_ENOMEM;
		return;
	}
	j->rc = store_messages_since(j->st, j->param[0], j->since, j->list, LIST_MAX, &j->nlist,
				     &j->latest);
}

static void park(srv_exchange *x, api_job *j);

static void list_done(srv_exchange *x, api_job *j)
{
	if (j->rc < 0) {
		free(j->list);
		storage_failed(x, j->rc);
		return;
	}
	if (j->nlist == 0 && j->wait_s > 0 && !x->srv->draining && !x->conn->closed) {
		free(j->list);
		park(x, j); /* answered when the mailbox changes or the wait is over */
		return;
	}
	json_t *arr = json_array();
	uint64_t seq = j->since;
	for (size_t i = 0; arr && i < j->nlist; i++) {
		/* Hidden messages are not the family's to hear: they read as deleted. */
		store_message *m = &j->list[i];
		if (m->state == STORE_MSG_HIDDEN)
			m->state = STORE_MSG_DELETED;
		json_array_append_new(arr, message_json(m));
		if (m->seq > seq)
			seq = m->seq;
	}
	/* A page cut at LIST_MAX resumes after its last change; else the newest there is. */
	if (j->nlist < LIST_MAX && j->latest > seq)
		seq = j->latest;
	free(j->list);
	respond_json(x, 200, arr ? json_pack("{s:o, s:I}", "messages", arr, "seq",
					    (json_int_t)seq)
				 : NULL);
}

/* ?since=N&wait=S, both optional, nothing else. 0, or -1 after answering 400. */
static int list_query(srv_exchange *x, uint64_t *since, unsigned *wait_s)
{
	const char *q = x->req.query.ptr;
	size_t n = x->req.query.len, i = 0;
	*since = 0;
	*wait_s = 0;
	while (q && i < n) {
		size_t end = i;
		while (end < n && q[end] != '&')
			end++;
		bool is_since = end - i > 6 && memcmp(q + i, "since=", 6) == 0;
		bool is_wait = end - i > 5 && memcmp(q + i, "wait=", 5) == 0;
		size_t v = i + (is_since ? 6 : 5);
		uint64_t val = 0;
		bool good = (is_since || is_wait) && end - v <= 19;
		for (size_t k = v; good && k < end; k++) {
			good = q[k] >= '0' && q[k] <= '9';
			val = val * 10 + (uint64_t)(q[k] - '0');
		}
		if (!good || (is_wait && val > LONG_POLL_MAX_S)) {
			srv_respond_error(x, 400, "invalid_query",
					  "the query is ?since=N&wait=SECONDS (0-60)");
			return -1;
		}
		if (is_since)
			*since = val;
		else
			*wait_s = (unsigned)val;
		i = end + 1;
	}
	return 0;
}

void srv_api_messages_list(srv_exchange *x)
{
	uint64_t since;
	unsigned wait_s;
	if (list_query(x, &since, &wait_s) < 0)
		return;
	api_job *j = authed_job(x, list_work, list_done);
	if (!j)
		return;
	j->since = since;
	j->wait_s = wait_s;
	run(x, j);
}

/* ---- long-polling: a list with nothing new waits for its mailbox to change ---- */
typedef struct srv_waiter {
	struct srv_waiter *prev, *next;
	uv_timer_t timer;
	srv_exchange *x;
	srv_conn *conn;
	char family[STORE_ID_LEN + 1];
	uint64_t since;
} srv_waiter;

static void waiter_closed(uv_handle_t *h)
{
	srv_waiter *w = h->data;
	srv_conn_unref(w->conn);
	free(w);
}

/* Unpark: list again (no more waiting) and answer whatever that finds. */
static void wake(srv_waiter *w)
{
	srv_server *s = w->x->srv;
	if (w->prev)
		w->prev->next = w->next;
	else
		s->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	s->waiter_count--;
	uv_timer_stop(&w->timer);
	api_job *j = calloc(1, sizeof *j);
	if (!j) {
		srv_respond_error(w->x, 500, "out_of_memory", "no memory");
	} else {
		j->work = list_work;
		j->done = list_done;
		j->since = w->since;
		memcpy(j->device.family_id.s, w->family, sizeof w->family);
		j->st = s->store;
		snprintf(j->param[0], sizeof j->param[0], "%s", w->family);
		if (srv_job_submit_any(w->x, job_run, job_done, j) < 0) {
			free(j);
			srv_respond_error(w->x, 500, "out_of_memory", "no memory");
		}
	}
	uv_close((uv_handle_t *)&w->timer, waiter_closed);
}

static void on_wait_over(uv_timer_t *t)
{
	wake(t->data);
}

static void park(srv_exchange *x, api_job *j)
{
	srv_server *s = x->srv;
	srv_waiter *w = calloc(1, sizeof *w);
	if (!w || uv_timer_init(s->loop, &w->timer) != 0) {
		free(w);
		srv_respond_error(x, 500, "out_of_memory", "no memory");
		return;
	}
	w->x = x;
	w->conn = x->conn;
	w->conn->refs++;
	w->since = j->since;
	snprintf(w->family, sizeof w->family, "%.*s", STORE_ID_LEN, j->param[0]);
	w->timer.data = w;
	w->next = s->waiters;
	if (s->waiters)
		s->waiters->prev = w;
	s->waiters = w;
	s->waiter_count++;
	uv_timer_start(&w->timer, on_wait_over, (uint64_t)j->wait_s * 1000, 0);
}

/* A change in family_id's mailbox: its waiters list again. */
static void mailbox_changed(srv_server *s, const char *family_id)
{
	for (srv_waiter *w = s->waiters, *next; w; w = next) {
		next = w->next;
		if (strcmp(w->family, family_id) == 0)
			wake(w);
	}
}

void srv_api_wake_all(srv_server *s)
{
	while (s->waiters)
		wake(s->waiters);
}

static void audio_auth_work(api_job *j)
{
	own_family(j);
}

static void audio_auth_done(srv_exchange *x, api_job *j)
{
	if (j->rc < 0) {
		storage_failed(x, j->rc);
		return;
	}
	srv_respond_message_audio(x, j->param[0], j->param[1], false);
}

void srv_api_message_audio(srv_exchange *x)
{
	api_job *j = authed_job(x, audio_auth_work, audio_auth_done);
	if (j)
		run(x, j);
}

static void listened_work(api_job *j)
{
	if (!own_family(j))
		return;
	j->rc = store_message_listened(j->st, j->param[0], j->param[1], j->member.id.s, now_ms(),
				       &j->latest);
}

static void listened_done(srv_exchange *x, api_job *j)
{
	if (j->rc < 0) {
		storage_failed(x, j->rc);
		return;
	}
	mailbox_changed(x->srv, j->param[0]);
	respond_json(x, 200, json_pack("{s:I}", "seq", (json_int_t)j->latest));
}

void srv_api_message_listened(srv_exchange *x)
{
	api_job *j = authed_job(x, listened_work, listened_done);
	if (j)
		run(x, j);
}

static void delete_work(api_job *j)
{
	if (!own_family(j))
		return;
	if ((j->rc = store_message_get(j->st, j->param[0], j->param[1], &j->msg)) < 0)
		return;
	if (j->msg.state == STORE_MSG_DELETED) {
		j->rc = STORE_ENOTFOUND;
		return;
	}
	if (strcmp(j->msg.sender.s, j->member.id.s) != 0 && j->member.role != STORE_ROLE_PARENT) {
		j->rc = 1;
		return;
	}
	j->rc = store_message_set_state(j->st, j->param[0], j->param[1], STORE_MSG_DELETED,
					&j->latest);
}

static void delete_done(srv_exchange *x, api_job *j)
{
	if (j->rc == 1) {
		srv_respond_error(x, 403, "forbidden", "only its sender or a parent can delete it");
		return;
	}
	if (j->rc < 0) {
		storage_failed(x, j->rc);
		return;
	}
	mailbox_changed(x->srv, j->param[0]);
	srv_respond_head(x, 204, NULL, NULL, -1);
}

void srv_api_message_delete(srv_exchange *x)
{
	api_job *j = authed_job(x, delete_work, delete_done);
	if (j)
		run(x, j);
}

static void flag_work(api_job *j)
{
	if (!own_family(j))
		return;
	if (!(j->flag = calloc(1, sizeof *j->flag))) {
		j->rc = STORE_ENOMEM;
		return;
	}
	j->rc = store_flag_add(j->st, j->param[0], j->param[1], j->member.id.s, j->reason,
			       now_ms(), j->flag);
}

static void flag_done(srv_exchange *x, api_job *j)
{
	if (j->rc < 0) {
		storage_failed(x, j->rc);
		return;
	}
	respond_json(x, 201, json_pack("{s:{s:s, s:s}}", "flag", "id", j->flag->id.s, "state",
				       "open"));
}

void srv_api_message_flag(srv_exchange *x)
{
	json_t *body = body_object(x);
	if (!body)
		return;
	const char *reason = json_string_value(json_object_get(body, "reason"));
	if (!reason || !*reason || strlen(reason) >= sizeof ((store_flag *)0)->reason) {
		json_decref(body);
		srv_respond_error(x, 400, "invalid_reason", "reason: 1-511 bytes of text");
		return;
	}
	api_job *j = authed_job(x, flag_work, flag_done);
	if (j)
		snprintf(j->reason, sizeof j->reason, "%s", reason);
	json_decref(body);
	if (j)
		run(x, j);
}
