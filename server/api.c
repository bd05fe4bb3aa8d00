/*
 * api.c — the v1 API's request machinery (one job per request, bearer authentication, JSON)
 * and its identity endpoints: sign-up (a family, its first parent and this device, with a
 * token), who am I, a family's members, revoking a device. Pairing codes and pairing are
 * api_pairing.c's, the mailbox api_messages.c's.
 *
 * Every request runs one job: authentication (the bearer token's SHA-256 looked up among
 * active devices: the lookup compares hashes, never tokens, so its timing says nothing usable
 * about any token) and the endpoint's storage calls, so a request costs one trip to the pool.
 * Tokens are 256 random bits shown once, in base64url; the store keeps only their hash. Someone
 * else's family is answered 404, never 403, so ids cannot be probed. JSON in and out with jansson;
 * names are 1-64 bytes of UTF-8 without control characters.
 */
#include "api_internal.h"
#include "ratelimit.h"
#include "uploads.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t api_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- JSON ---- */
void api_respond_wait(srv_exchange *x, uint64_t wait, const char *code, const char *message)
{
	char retry[48];
	snprintf(retry, sizeof retry, "Retry-After: %llu\r\n",
	         wait > 1000 ? (unsigned long long)(wait + 999) / 1000 : 1ull);
	srv_respond_error_with(x, 429, code, message, retry);
}

void api_respond_until(srv_exchange *x, int64_t until_ms, const char *code, const char *message)
{
	int64_t wait = until_ms - api_now_ms();
	api_respond_wait(x, wait > 0 ? (uint64_t)wait : 0, code, message);
}

void api_respond_spent(srv_exchange *x, srv_ratelimit *r, const char *key, const char *code,
                       const char *message)
{
	api_respond_wait(x, srv_rate_wait_ms(r, key, uv_now(x->srv->loop)), code, message);
}

void api_respond_json(srv_exchange *x, int status, json_t *obj)
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

/*
 * Content-Type: application/json, in any case, with or without parameters (";charset=utf-8",
 * whitespace allowed before the ';'). The type whole, not a prefix of it (review finding:
 * application/json-patch+json and application/jsonx were taken), and present: docs/api.md
 * says requests with a body send it.
 */
static bool json_media_type(const srv_slice *ct)
{
	static const char type[] = "application/json";
	size_t n = sizeof type - 1;
	if (!ct || ct->len < n || strncasecmp(ct->ptr, type, n) != 0)
		return false;
	size_t i = n;
	while (i < ct->len && (ct->ptr[i] == ' ' || ct->ptr[i] == '\t'))
		i++;
	return i == ct->len || ct->ptr[i] == ';';
}

/* The request's JSON object, or NULL after answering 400/415. */
json_t *api_body_object(srv_exchange *x)
{
	if (!json_media_type(srv_request_header(&x->req, "Content-Type"))) {
		srv_respond_error(x, 415, "unsupported_media_type",
		                  "send Content-Type: application/json");
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

/*
 * A name field: 1..STORE_NAME_MAX bytes of UTF-8 (jansson checked it) without control
 * characters: neither C0 and DEL nor C1 (U+0080-U+009F, UTF-8 C2 80-C2 9F), which a name
 * pasted from a legacy-encoded text brings and which no screen shows.
 */
const char *api_name_field(json_t *obj, const char *key, bool required)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return required ? NULL : "";
	const char *s = json_string_value(v);
	return s && strlen(s) == json_string_length(v) && store_name_ok(s) ? s : NULL;
}

bool api_idempotency_key_ok(const char *key, size_t len)
{
	if (len == 0 || len > API_IDEMPOTENCY_KEY_MAX)
		return false;
	for (const unsigned char *p = (const unsigned char *)key;
	     p < (const unsigned char *)key + len; p++)
		if (*p < 0x20 || *p > 0x7e)
			return false;
	return true;
}

bool api_idempotency_header(srv_exchange *x, const srv_slice **key)
{
	*key = srv_request_header(&x->req, "Idempotency-Key");
	if (*key && !api_idempotency_key_ok((*key)->ptr, (*key)->len)) {
		srv_respond_error(x, 400, "invalid_idempotency_key",
		                  "Idempotency-Key: 1-128 printable ASCII characters");
		return false;
	}
	return true;
}

/* A key whose retry is handed a token is a credential: longer than the uploads' least (a UUID
 * is 36 characters). */
#define TOKEN_KEY_MIN 16

bool api_token_key_header(srv_exchange *x, const srv_slice **key)
{
	if (!api_idempotency_header(x, key))
		return false;
	if (*key && (*key)->len < TOKEN_KEY_MIN) {
		srv_respond_error(
		    x, 400, "invalid_idempotency_key",
		    "Idempotency-Key: 16-128 printable ASCII characters (its retry is "
		    "handed a token)");
		return false;
	}
	return true;
}

_Static_assert(API_IDEM_STORED_LEN - 1 <= STORE_ADD_KEY_MAX, "a member's add key fits storage");

void api_idempotency_stored(const api_job *j, const char *idem, char key[API_IDEM_STORED_LEN])
{
	uint8_t h[STORE_HASH_LEN];
	crypto_hash_sha256(h, (const unsigned char *)idem, strlen(idem));
	int n = snprintf(key, API_IDEM_STORED_LEN, "%.26s:", j->member.id.s);
	sodium_bin2hex(key + n, API_IDEM_STORED_LEN - (size_t)n, h, sizeof h);
}

const char *api_avatar_field(json_t *obj)
{
	json_t *v = json_object_get(obj, "avatar");
	if (!v || (json_is_string(v) && json_string_length(v) == 0))
		return "";
	const char *s = api_name_field(obj, "avatar", false);
	return s && strlen(s) < sizeof((store_member *)0)->avatar ? s : NULL;
}

json_t *api_family_json(const store_family *f)
{
	return json_pack("{s:s, s:s}", "id", f->id.s, "name", f->name);
}

json_t *api_member_json(const store_member *m)
{
	return json_pack("{s:s, s:s, s:s, s:s}", "id", m->id.s, "name", m->name, "role",
			 store_role_name(m->role), "avatar", m->avatar);
}

json_t *api_device_json(const store_device *d)
{
	json_t *seen = d->last_seen_ms ? json_integer(d->last_seen_ms / 1000) : json_null();
	return json_pack("{s:s, s:s, s:s, s:I, s:o}", "id", d->id.s, "name", d->name, "kind",
			 d->kind == STORE_DEVICE_KIOSK ? "kiosk" : "personal", "created_at",
			 (json_int_t)(d->created_ms / 1000), "last_seen_at", seen);
}

bool api_failed(srv_exchange *x, api_job *j, const char *forbidden_why)
{
	if (j->rc == 1) {
		srv_respond_error(x, 403, "forbidden", forbidden_why);
		return true;
	}
	if (j->rc < 0) {
		api_storage_failed(x, j->rc);
		return true;
	}
	return false;
}

static void storage_answer(srv_exchange *x, int rc, bool count)
{
	if (rc == STORE_ENOTFOUND) {
		srv_respond_error(x, 404, "not_found", "no such thing here");
		return;
	}
	if (rc == STORE_EINVAL) {
		srv_respond_error(x, 400, "invalid_argument", store_strerror(rc));
		return;
	}
	if (rc == STORE_EEXIST || rc == STORE_ECHANGED || rc == STORE_ELIMIT) {
		/* An endpoint that can meet these answers them itself; here one came of a race
		 * with another change (a new id taken meanwhile, a row changed between two
		 * statements): not storage failing, and sending again settles it. */
		srv_respond_error_with(x, 503, "try_again",
		                       "something changed meanwhile: send it again",
		                       "Retry-After: 1\r\n");
		return;
	}
	if (rc == STORE_EQUOTA) {
		srv_respond_error(x, 507, "quota_exceeded", store_strerror(rc));
		return;
	}
	if (count)
		x->srv->metrics.storage_errors++;
	srv_respond_error_with(x, rc == STORE_EFULL ? 507 : 503, store_errcode(rc),
			       store_strerror(rc), "Retry-After: 5\r\n");
}

void api_storage_failed(srv_exchange *x, int rc)
{
	storage_answer(x, rc, true);
}

void api_storage_failed_again(srv_exchange *x, int rc)
{
	storage_answer(x, rc, false);
}

/* ---- one job per request: who is asking, then the endpoint's own work ---- */
void api_job_run(void *arg)
{
	api_job *j = arg;
	if (j->authed && j->checked) {
		if (api_still_the_caller(j))
			j->work(j);
		return;
	}
	if (j->authed) {
		store_device d;
		int64_t now = api_now_ms();
		j->auth_rc = store_device_by_token(j->st, j->token_hash, &d);
		if (j->auth_rc == STORE_ENOTFOUND) {
			/* Not a device: a child's session at a school kiosk, while not idle? */
			j->auth_rc = store_kiosk_session_auth(j->st, j->token_hash, now, j->idle_ms,
			                                      !j->by_itself, &j->device, &j->member,
			                                      &j->idle_at_ms);
			j->session = j->auth_rc == 0;
			if (j->session)
				d = j->device;
		} else if (j->auth_rc == 0) {
			j->device = d;
			/* A kiosk's own token opens kiosk endpoints only: families it sees through
			 * its children's sessions. */
			if (d.kind == STORE_DEVICE_KIOSK && !j->kiosk_endpoint)
				j->auth_rc = STORE_ENOTFOUND;
			else if (d.kind == STORE_DEVICE_PERSONAL)
				j->auth_rc = store_member_get(j->st, d.member_id.s, &j->member);
		}
		if (j->auth_rc < 0)
			return;
		memcpy(j->caller_key, j->token_hash, sizeof j->caller_key);
		j->caller_checked = true;
		store_device_touch(j->st, d.id.s, now); /* advisory: errors ignored */
	}
	j->work(j);
}

int api_phone_still(store *st, const uint8_t *token_hash, const char *member_id)
{
	store_device d;
	store_member m;
	int rc;
	if ((rc = store_device_by_token(st, token_hash, &d)) == 0 &&
	    (rc = store_member_get(st, d.member_id.s, &m)) == 0 && strcmp(m.id.s, member_id) != 0)
		rc = STORE_ENOTFOUND;
	return rc;
}

bool api_still_the_caller(api_job *j)
{
	int rc;
	/* A child at a kiosk: still a member, paired to that kiosk, which is not revoked. Its
	 * session may have ended meanwhile (the next child logged in on the shared tablet): its
	 * recording is kept all the same. */
	if (j->session)
		rc = store_kiosk_child_linked(j->st, j->device.id.s, j->member.id.s);
	else
		rc = api_phone_still(j->st, j->token_hash, j->member.id.s);
	if (rc < 0)
		j->auth_rc = rc;
	return rc == 0;
}

void api_audit(api_job *j, int64_t now_ms, const char *action, const char *family_id,
               const char *target, const char *detail)
{
	int rc =
	    store_audit_append(j->st, now_ms, j->member.id.s, action, family_id, target, detail);
	if (rc < 0 && j->audit_rc == 0) {
		j->audit_rc = rc;
		j->audit_action = action;
		snprintf(j->audit_family, sizeof j->audit_family, "%s",
		         family_id ? family_id : "-");
		snprintf(j->audit_target, sizeof j->audit_target, "%s", target ? target : "-");
	}
}

/* On the loop: a record the audit log lacks is said out loud (api_audit). */
static void audit_failed(srv_server *s, const api_job *j)
{
	char detail[256];
	snprintf(detail, sizeof detail, "%s by member %s in family %s, target %s: %s",
	         j->audit_action, j->member.id.s, j->audit_family, j->audit_target,
	         store_errcode(j->audit_rc));
	s->metrics.storage_errors++;
	s->metrics.audit_failures++;
	srv_log_event(s, "audit_failed", detail);
}

void api_caller_buffers(srv_exchange *x, const api_job *j)
{
	if (j->caller_checked && j->auth_rc == 0)
		srv_buffer_owner(x, j->caller_key);
}

bool api_attempt_take(srv_server *s, api_job *j, srv_ratelimit *a, const char *ka, srv_ratelimit *b,
                      const char *kb)
{
	uint64_t now = uv_now(s->loop);
	if (!srv_rate_take(a, ka, now))
		return false;
	if (b && !srv_rate_take(b, kb, now)) {
		srv_rate_refund(a, ka, now, now);
		return false;
	}
	api_attempt *t = &j->attempt;
	*t = (api_attempt){.limit = {a, b}, .taken_ms = now, .counted = true};
	snprintf(t->key[0], sizeof t->key[0], "%s", ka);
	snprintf(t->key[1], sizeof t->key[1], "%s", b ? kb : "");
	return true;
}

void api_attempt_refund(srv_server *s, api_job *j)
{
	api_attempt *t = &j->attempt;
	if (!t->counted)
		return;
	uint64_t now = uv_now(s->loop);
	for (int i = 0; i < 2 && t->limit[i]; i++)
		srv_rate_refund(t->limit[i], t->key[i], t->taken_ms, now);
	t->counted = false;
}

void api_job_done(srv_exchange *x, void *arg)
{
	api_job *j = arg;
	srv_server *s = x->srv; /* answering may end the exchange: x is not ours after it */
	api_transcode_counted(s, j);
	if (j->authed && j->auth_rc < 0) {
		if (j->auth_rc == STORE_ENOTFOUND)
			srv_respond_error_with(x, 401, "unauthorized", "the token is not valid",
					       "WWW-Authenticate: Bearer\r\n");
		else
			api_storage_failed(x, j->auth_rc);
	} else {
		api_caller_buffers(x, j);
		j->done(x, j);
	}
	api_attempt_refund(s, j); /* an attempt (a code, a PIN) that was not a wrong one */
	if (j->audit_rc < 0)
		audit_failed(s, j);
	api_job_free(j);
}

void api_job_free(api_job *j)
{
	api_session_use_end(j->in_use); /* the request is over: its last use recorded */
	api_in_flight_end(&j->flight);
	api_export_release(j->export);
	srv_job_heavy_unreserve(j->heavy);
	if (j->hold[0])
		srv_upload_release(j->upload_dir, j->hold);
	free(j->members);
	free(j->devices);
	free(j->flag);
	free(j->links);
	free(j->list);
	free(j->text);
	free(j->gz);
	/* All of it: a new device's token, a pairing code, a PIN, the caller's token hash. */
	sodium_memzero(j, sizeof *j);
	free(j);
}

void api_prepare(srv_exchange *x, api_job *j)
{
	j->st = x->srv->store;
	j->secret = x->srv->secret;
	j->default_quota = x->srv->cfg.family_quota;
	j->upload_cap = x->srv->cfg.family_upload_bytes;
	j->gzip = x->accepts_gzip;
	for (int i = 0; i < 2; i++)
		snprintf(j->param[i], sizeof j->param[i], "%.*s", (int)x->params[i].len,
			 x->params[i].ptr ? x->params[i].ptr : "");
}

void api_start(srv_exchange *x, api_work_fn work, api_done_fn done)
{
	api_job *j = api_authed_job(x, work, done);
	if (j)
		api_run(x, j);
}

void api_run(srv_exchange *x, api_job *j)
{
	api_prepare(x, j);
	if (srv_job_submit(x, api_job_run, api_job_done, j) < 0) {
		api_attempt_refund(x->srv, j);
		api_job_free(j); /* a PIN, a code or a token hash in it is wiped, as after a job */
		srv_respond_busy(x);
	}
}

void api_run_heavy(srv_exchange *x, api_job *j, const char *family_id)
{
	api_prepare(x, j);
	if (j->heavy) {
		struct srv_heavy *h = j->heavy;
		j->heavy = NULL;
		srv_job_submit_reserved(x, h, api_job_run, api_job_done, j);
		return;
	}
	int rc = srv_job_submit_heavy(x, family_id, api_job_run, api_job_done, j);
	if (rc < 0) {
		api_attempt_refund(x->srv, j);
		api_job_free(j);
		srv_respond_job_refused(x, rc);
	}
}

/*
 * The request's bearer token (the header's value after "Bearer" and its spaces: RFC 6750 2.1
 * allows more than one, and the scheme in any case), or false after answering 401. Two
 * Authorization lines are refused, not one of them picked: a proxy may read the other.
 */
static bool bearer(srv_exchange *x, srv_slice *token)
{
	const srv_slice *a;
	size_t i = 6;
	if (srv_request_header_once(&x->req, "Authorization", &a) && a && a->len > i &&
	    strncasecmp(a->ptr, "Bearer", i) == 0 && a->ptr[i] == ' ') {
		while (i < a->len && a->ptr[i] == ' ')
			i++;
		*token = (srv_slice){a->ptr + i, a->len - i};
		if (token->len > 0 && token->len <= 128)
			return true;
	}
	srv_respond_error_with(x, 401, "unauthorized", "send Authorization: Bearer TOKEN",
	                       "WWW-Authenticate: Bearer\r\n");
	return false;
}

bool api_bearer_present(srv_exchange *x)
{
	srv_slice token;
	return bearer(x, &token);
}

/* A job for an endpoint that needs a caller: NULL after answering 401. */
api_job *api_authed_job(srv_exchange *x, api_work_fn work, api_done_fn done)
{
	srv_slice token;
	if (!bearer(x, &token))
		return NULL;
	api_job *j = calloc(1, sizeof *j);
	if (!j) {
		srv_respond_error(x, 500, "out_of_memory", "no memory");
		return NULL;
	}
	j->authed = true;
	j->idle_ms = (int64_t)x->srv->cfg.kiosk_idle_s * 1000;
	j->work = work;
	j->done = done;
	/* Only the hash leaves this function; the store never sees a token. */
	crypto_hash_sha256(j->token_hash, (const unsigned char *)token.ptr, token.len);
	return j;
}

/* A new device's token (256 random bits, base64url) in j->token, its hash in j->token_hash. */
void api_new_token(api_job *j)
{
	uint8_t raw[SRV_TOKEN_BYTES];
	randombytes_buf(raw, sizeof raw);
	sodium_bin2base64(j->token, sizeof j->token, raw, sizeof raw,
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof raw);
	crypto_hash_sha256(j->token_hash, (const unsigned char *)j->token, strlen(j->token));
}

void api_respond_device(srv_exchange *x, api_job *j, int status)
{
	api_respond_json(x, status,
	                 json_pack("{s:o, s:o, s:o, s:s}", "family", api_family_json(&j->family),
	                           "member", api_member_json(&j->member), "device",
	                           api_device_json(&j->device), "token", j->token));
}

void api_respond_new_device(srv_exchange *x, api_job *j)
{
	api_respond_device(x, j, 201);
}

/* ---- POST /v1/families ---- */
/*
 * A sign-up's Idempotency-Key is a credential: sent again, it gets a token for the device it
 * made. Hence at least 16 characters (api_token_key_header), and honoured only while that
 * device was never used, for a day: the phone whose answer was lost sends it again within
 * minutes, and once it used its token it has its answer.
 */
#define SIGNUP_AGAIN_MS (24 * 3600 * 1000LL)

static void create_work(api_job *j)
{
	api_new_token(j);
	int64_t now = api_now_ms();
	if (!j->idem[0]) {
		j->signup = STORE_SIGNUP_MADE;
		j->rc = store_family_create_with_device(
		    j->st, j->family_name, j->member_name, j->family.quota_bytes, j->token_hash,
		    j->device_name, now, &j->family, &j->member, &j->device);
		return;
	}
	/* Only the key's hash is stored, as a token's; with the address's hour spent
	 * (attempt not counted) only a retry is answered, no family made. */
	uint8_t key[STORE_HASH_LEN];
	crypto_hash_sha256(key, (const unsigned char *)j->idem, strlen(j->idem));
	j->rc = store_family_signup(j->st, j->family_name, j->member_name, j->family.quota_bytes,
	                            j->token_hash, j->device_name, key, now - SIGNUP_AGAIN_MS,
	                            j->attempt.counted, now, &j->family, &j->member, &j->device,
	                            &j->signup);
	sodium_memzero(key, sizeof key);
}

static void create_done(srv_exchange *x, api_job *j)
{
	if (j->rc < 0) {
		api_storage_failed(x, j->rc);
		return;
	}
	/* A family made stays counted against the address's hour; anything else is given back
	 * when the job ends (api_attempt_refund): a retry counts once. */
	switch (j->signup) {
	case STORE_SIGNUP_NONE:
		api_respond_spent(x, &x->srv->signup_limit, x->client, "rate_limited",
		                  "too many new families from this address; try later");
		return;
	case STORE_SIGNUP_DONE:
		srv_respond_error(x, 409, "already_signed_up",
		                  "this Idempotency-Key's sign-up is done: its phone has used its "
		                  "token, or it is over a day old");
		return;
	case STORE_SIGNUP_OTHER:
		srv_respond_error(x, 422, "idempotency_key_reused",
		                  "this Idempotency-Key signed up other names: send a new key");
		return;
	case STORE_SIGNUP_AGAIN:
		api_respond_device(x, j, 200);
		return;
	case STORE_SIGNUP_MADE:
		break;
	}
	j->attempt.counted = false; /* a family made: it stays counted */
	api_respond_new_device(x, j);
}

void srv_api_families_create(srv_exchange *x)
{
	srv_server *s = x->srv;
	const srv_slice *key;
	if (!api_token_key_header(x, &key))
		return;
	json_t *body = api_body_object(x);
	if (!body)
		return;
	const char *family = api_name_field(body, "family_name", true);
	const char *member = api_name_field(body, "member_name", true);
	const char *device = api_name_field(body, "device_name", false);
	if (!family || !member || !device) {
		json_decref(body);
		srv_respond_error(x, 400, "invalid_name",
				  "family_name and member_name are required: 1-64 bytes of text");
		return;
	}
	api_job *j = calloc(1, sizeof *j);
	if (!j) {
		json_decref(body);
		srv_respond_error(x, 500, "out_of_memory", "no memory");
		return;
	}
	/* Only well-formed sign-ups count against the address's hour, and only those that made
	 * a family: one the store failed (503, 507) is given back when the job ends, so a phone
	 * that retries after Retry-After is not locked out for the hour (create_done). A retry
	 * with its Idempotency-Key is answered even with the hour spent (its first took it: the
	 * phone whose answer was lost would be refused its own family), and makes nothing new. */
	if (!api_attempt_take(s, j, &s->signup_limit, x->client, NULL, NULL) && !key) {
		free(j);
		json_decref(body);
		api_respond_spent(x, &s->signup_limit, x->client, "rate_limited",
		                  "too many new families from this address; try later");
		return;
	}
	snprintf(j->family_name, sizeof j->family_name, "%s", family);
	snprintf(j->member_name, sizeof j->member_name, "%s", member);
	snprintf(j->device_name, sizeof j->device_name, "%s", *device ? device : "phone");
	if (key)
		snprintf(j->idem, sizeof j->idem, "%.*s", (int)key->len, key->ptr);
	j->family.quota_bytes = s->cfg.family_quota;
	json_decref(body);
	j->work = create_work;
	j->done = create_done;
	api_run(x, j);
}

/* ---- GET /v1/me ---- */
static void me_work(api_job *j)
{
	j->rc = store_family_get(j->st, j->device.family_id.s, &j->family);
}

static void me_done(srv_exchange *x, api_job *j)
{
	if (j->rc < 0) {
		api_storage_failed(x, j->rc);
		return;
	}
	api_respond_json(x, 200, json_pack("{s:o, s:o, s:o}", "family", api_family_json(&j->family),
				       "member", api_member_json(&j->member), "device",
				       api_device_json(&j->device)));
}

void srv_api_me(srv_exchange *x)
{
	api_start(x, me_work, me_done);
}

/* ---- who may act on the path's family ---- */
bool api_own_family(api_job *j)
{
	if (strcmp(j->param[0], j->device.family_id.s) == 0)
		return true;
	j->rc = STORE_ENOTFOUND; /* another family: as if it did not exist */
	return false;
}

bool api_grown_up(api_job *j)
{
	if (!api_own_family(j))
		return false;
	if (j->member.role == STORE_ROLE_PARENT || j->member.role == STORE_ROLE_CAREGIVER)
		return true;
	j->rc = 1; /* forbidden */
	return false;
}

bool api_parent(api_job *j)
{
	if (!api_own_family(j))
		return false;
	if (j->member.role == STORE_ROLE_PARENT)
		return true;
	j->rc = 1; /* forbidden */
	return false;
}

/* ---- GET /v1/families/{family_id}/members ---- */
static void members_work(api_job *j)
{
	if (!api_own_family(j))
		return;
	if (!(j->members = calloc(STORE_MEMBER_ROWS_MAX, sizeof *j->members))) {
		j->rc = STORE_ENOMEM;
		return;
	}
	/* The members, then who sent old messages and has left: one read, so none is both. */
	size_t n = 0;
	j->rc = store_members_all(j->st, j->param[0], j->members, STORE_MEMBER_ROWS_MAX, &n);
	while (j->nmembers < n && !j->members[j->nmembers].removed_ms)
		j->nmembers++;
	j->nformer = n - j->nmembers;
}

static void members_done(srv_exchange *x, api_job *j)
{
	if (j->rc < 0) {
		api_storage_failed(x, j->rc);
		return;
	}
	json_t *list = json_array(), *former = json_array();
	for (size_t i = 0; list && i < j->nmembers; i++)
		json_array_append_new(list, api_member_json(&j->members[i]));
	for (size_t i = 0; former && i < j->nformer; i++) {
		const store_member *m = &j->members[j->nmembers + i];
		json_t *o = api_member_json(m);
		json_object_set_new(o, "left_at", json_integer(m->removed_ms / 1000));
		json_array_append_new(former, o);
	}
	json_t *body = list && former
	                   ? json_pack("{s:o, s:o}", "members", list, "former_members", former)
	                   : (json_decref(list), json_decref(former), NULL);
	api_respond_json(x, 200, body);
}

void srv_api_members_list(srv_exchange *x)
{
	api_start(x, members_work, members_done);
}

/* ---- POST /v1/families/{family_id}/members: a member without a phone (a kiosk child) ---- */
/* A family has as many members as a members list shows (and a kiosk screen can hold): adding
 * one more, or pairing a phone for one, is refused. */
bool api_too_many_members(srv_exchange *x, int rc)
{
	if (rc != STORE_ELIMIT)
		return false;
	srv_respond_error(x, 409, "too_many_members",
	                  "a family has at most 64 members, and 256 with those who have left");
	return true;
}

static void member_add_work(api_job *j)
{
	if (!api_grown_up(j))
		return;
	/* Only a parent makes a parent, here as with pairing codes (review finding: a caregiver
	 * added one). */
	if (j->role == STORE_ROLE_PARENT && j->member.role != STORE_ROLE_PARENT) {
		j->rc = 1;
		return;
	}
	if (!(j->members = calloc(1, sizeof *j->members))) {
		j->rc = STORE_ENOMEM;
		return;
	}
	/* With an Idempotency-Key: the member the caller added with it before, if any, in the
	 * transaction that would add it (a retry whose 201 was lost made a second 小刚). */
	char key[API_IDEM_STORED_LEN];
	if (j->idem[0])
		api_idempotency_stored(j, j->idem, key);
	int existed = 0;
	int64_t now = api_now_ms();
	j->rc = store_member_add_once(j->st, j->param[0], j->member_name, j->role, j->device_name,
	                              j->idem[0] ? key : NULL, now, j->members, &existed);
	j->existed = existed;
	/* Who added whom, in what role, as a removal is recorded; a retry added nobody. */
	if (j->rc == 0 && !existed)
		api_audit(j, now, "member.add", j->param[0], j->members->id.s,
		          store_role_name(j->role));
}

static void member_add_done(srv_exchange *x, api_job *j)
{
	if (api_too_many_members(x, j->rc))
		return;
	if (api_failed(x, j,
	               "only a parent or caregiver can add members, and only a parent a parent"))
		return;
	/* A retry: the member as it is now, and when it was removed since, when it left (as the
	 * list's former members), not a second one. */
	json_t *m = api_member_json(j->members);
	if (m && j->existed && j->members->removed_ms)
		json_object_set_new(m, "left_at", json_integer(j->members->removed_ms / 1000));
	api_respond_json(x, j->existed ? 200 : 201, json_pack("{s:o}", "member", m));
}

void srv_api_member_add(srv_exchange *x)
{
	const srv_slice *key;
	if (!api_bearer_present(x) || !api_idempotency_header(x, &key))
		return;
	json_t *body = api_body_object(x);
	if (!body)
		return;
	const char *member = api_name_field(body, "member_name", true);
	json_t *rv = json_object_get(body, "role");
	const char *role = json_string_value(rv);
	const char *avatar = api_avatar_field(body);
	/* Nothing else, as for PATCH: a key misspelt ("avatr") made the member without it, 201. */
	size_t known = (json_object_get(body, "member_name") != NULL) + (rv != NULL) +
	               (json_object_get(body, "avatar") != NULL);
	store_role r;
	const char *err = json_object_size(body) != known           ? "invalid_setting"
	                  : !member                                 ? "invalid_name"
	                  : !role || store_role_parse(role, &r) < 0 ? "invalid_role"
	                  : !avatar                                 ? "invalid_avatar"
	                                                            : NULL;
	api_job *j = err ? NULL : api_authed_job(x, member_add_work, member_add_done);
	if (j) {
		j->role = r;
		snprintf(j->member_name, sizeof j->member_name, "%s", member);
		snprintf(j->device_name, sizeof j->device_name, "%s", avatar); /* the avatar */
		if (key)
			snprintf(j->idem, sizeof j->idem, "%.*s", (int)key->len, key->ptr);
	}
	json_decref(body);
	if (err)
		srv_respond_error(
		    x, 400, err,
		    strcmp(err, "invalid_name") == 0   ? "member_name: 1-64 bytes of text"
		    : strcmp(err, "invalid_role") == 0 ? "role is parent, caregiver or child"
		    : strcmp(err, "invalid_avatar") == 0
		        ? "avatar: up to 31 bytes"
		        : "send member_name, role and (optional) avatar, nothing else");
	else if (j)
		api_run(x, j);
}

/* ---- DELETE /v1/devices/{device_id} ---- */
static void revoke_work(api_job *j)
{
	if (j->session) {
		j->rc = 1; /* a child at a kiosk revokes nothing, the kiosk's own token least of all */
		return;
	}
	j->rc = store_device_get(j->st, j->param[0], &j->target);
	if (j->rc < 0)
		return;
	bool own = strcmp(j->target.id.s, j->device.id.s) == 0;
	bool same_family = j->target.kind == STORE_DEVICE_PERSONAL &&
			   strcmp(j->target.family_id.s, j->device.family_id.s) == 0;
	if (!same_family && !own) {
		j->rc = STORE_ENOTFOUND;
		return;
	}
	/* A child revokes only its own phone; a caregiver anyone's but a parent's, so that
	 * nobody but a parent can lock the parents out of their family. */
	store_member owner;
	bool may = own || j->member.role == STORE_ROLE_PARENT;
	if (!may && j->member.role == STORE_ROLE_CAREGIVER) {
		/* A phone whose owner left the family (revoked then) is no parent's any more. */
		j->rc = store_member_get(j->st, j->target.member_id.s, &owner);
		if (j->rc < 0 && j->rc != STORE_ENOTFOUND)
			return;
		may = j->rc == STORE_ENOTFOUND || owner.role != STORE_ROLE_PARENT;
		j->rc = 0;
	}
	if (!may) {
		j->rc = 1; /* forbidden */
		return;
	}
	/* Not the family's last parent phone: nobody but a parent pairs a parent's phone. */
	int64_t now = api_now_ms();
	if ((j->rc = store_device_revoke_keeping_parent(j->st, j->target.id.s, now)) == 0)
		api_audit(j, now, "device.revoke", j->target.family_id.s, j->target.id.s, NULL);
	else if (j->rc == 1) /* revoked already (a second tap, a retry): 204, recorded once */
		j->rc = 0;
}

static void revoke_done(srv_exchange *x, api_job *j)
{
	if (j->rc == STORE_ELIMIT) {
		srv_respond_error(
		    x, 409, "last_parent_device",
		    "the family's last parent phone: pair another parent's phone first");
		return;
	}
	if (api_failed(x, j, "a child revokes only its own phone, a caregiver no parent's"))
		return;
	api_mailbox_changed(x->srv, j->target.family_id.s); /* its waiting long-poll hears 401 */
	srv_respond_head(x, 204, NULL, NULL, -1);
}

void srv_api_device_delete(srv_exchange *x)
{
	api_start(x, revoke_work, revoke_done);
}
