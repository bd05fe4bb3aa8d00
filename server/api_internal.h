/*
 * api_internal.h — what the v1 API's files share: api.c (requests, authentication, identity),
 * api_pairing.c, api_family.c, api_kiosk.c, api_messages.c and api_poll.c (the mailbox),
 * api_uploads.c (with tus_op.c), api_session_use.c (a kiosk session in use while its upload
 * lasts). Private to server/; loop thread unless noted.
 */
#ifndef JIAYIN_SERVER_API_INTERNAL_H
#define JIAYIN_SERVER_API_INTERNAL_H

#include "api.h"
#include "codec.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define PAIRING_CODE_MAX 24  /* a code's digits, as typed without its spaces, and a NUL */
#define PAIRING_DIGITS 16    /* 15 random digits and a check digit: 10^15 codes */
#define PAIRING_DIGITS_OLD 8 /* the codes made before 16 (api_pairing_code_parse) */
#define PAIRING_TTL_MS (10 * 60 * 1000)
#define MEMBERS_MAX STORE_MEMBERS_MAX /* a family's members: all of them in one answer */

typedef struct api_job api_job;
typedef struct api_session_use api_session_use;
typedef void (*api_work_fn)(api_job *j);
typedef void (*api_done_fn)(srv_exchange *x, api_job *j);

/* An attempt counted towards one or two rate limits before its job (api_attempt_take). */
typedef struct api_attempt {
	srv_ratelimit *limit[2]; /* NULL: none */
	char key[2][48];
	uint64_t taken_ms; /* loop time it was counted at */
	bool counted;      /* still to be given back unless the job keeps it */
} api_attempt;

/*
 * A plain upload with an Idempotency-Key whose recording is whole and being transcoded and
 * stored (or a resumable upload's finish under its idempotency_key, tus_op.c): a plain retry of
 * it from the same phone is answered before its body meanwhile, or, its body read already,
 * waits for it instead of being transcoded too (api_messages.c). Listed in the server's
 * uploads_in_flight, on the loop, from the body's end until its job is freed (api_job_free;
 * a finish's: from its submission until its op ends, tus_op_end). A retry that waits is listed by
 * its own entry in the first's `parked`, with its job and exchange (its connection held), until the
 * first's entry ends.
 */
typedef struct api_in_flight {
	struct api_in_flight *prev, *next;
	struct api_in_flight **head; /* NULL: not listed */
	char family[STORE_ID_LEN + 1];
	uint8_t token_hash[STORE_HASH_LEN];
	char idem[130];
	bool resumable;               /* a resumable upload's finish, not a plain copy */
	struct api_in_flight *parked; /* retries waiting for this one's end */
	api_job *job;                 /* a waiting retry's, and its exchange */
	srv_exchange *x;
} api_in_flight;

struct api_job {
	store *st;
	const uint8_t *secret;         /* the server's key (secret.h) */
	uint64_t default_quota;        /* for families stored without one (quota_bytes 0) */
	uint64_t upload_cap;           /* family-upload-bytes (api_upload_allowance) */
	bool authed;                   /* a token was presented */
	/* authed, and authenticated already, before a wait (a plain upload's body, a resumable
	 * upload's transcode in the queue): the job checks only that the caller is still who it
	 * was (api_still_the_caller), not the token again, so a child's kiosk session that ended
	 * meanwhile (the next child's login, kiosk-idle-s) keeps its story */
	bool checked;
	uint8_t token_hash[STORE_HASH_LEN];
	/* token_hash when it was authenticated (api_caller_buffers); the work may reuse
	 * token_hash (a kiosk login makes the session's there) */
	uint8_t caller_key[STORE_HASH_LEN];
	bool caller_checked;
	store_device device;           /* the caller */
	store_member member;           /* the caller's member (personal devices, kiosk sessions) */
	bool session;                  /* the token is a child's kiosk session */
	bool by_itself;                /* the app asks, not its user (a long-poll): no kiosk use */
	bool kiosk_endpoint;           /* a kiosk's own token is welcome (api_kiosk.c) */
	bool phones_revoked;           /* pairing: a member's new phone revoked its old ones */
	bool session_started;          /* kiosk login: its kiosk's other sessions are over */
	int64_t idle_ms;               /* a kiosk session idle this long is over */
	int64_t idle_at_ms;            /* a kiosk session: over then unless used (api_now_ms) */
	api_session_use *in_use;       /* a session's request in use till it ends (api_job_free) */
	int auth_rc;
	api_work_fn work;
	api_done_fn done;
	int rc;
	int audit_rc; /* api_audit()'s failure, logged once the job is done */
	const char *audit_action;
	char audit_family[64], audit_target[64]; /* what the missing record names */
	char param[2][64];             /* path parameters, NUL-terminated */
	/* endpoint data */
	char family_name[STORE_NAME_MAX + 1], member_name[STORE_NAME_MAX + 1];
	char device_name[STORE_NAME_MAX + 1];
	char token[64];
	store_family family;
	store_member *members;         /* members listed or added; freed by job_done */
	size_t nmembers, nformer;      /* a list's former members follow its members */
	store_device target;
	store_device *devices;         /* a family's devices listed; freed by job_done */
	size_t ndevices;
	store_role role;
	int64_t expires_ms;
	unsigned pairings_max; /* pairings-per-hour: phones paired into a family in an hour */
	int64_t paired_first_ms; /* pairing refused: when the first of the hour was */
	char code[PAIRING_CODE_MAX];
	api_attempt attempt; /* a pairing code's, a kiosk login's, a sign-up's (api_attempt_take) */
	/* messages */
	int body_fd;
	uint64_t declared;           /* a plain upload's Content-Length; 0: chunked */
	bool expect;                 /* its body waits for 100 Continue: a retry answered first */
	uint64_t held;               /* the bytes its body holds (srv_upload_hold) */
	uint64_t body_max;           /* the most it may have: held, or what was left when chunked */
	uint64_t allowance;          /* the family's at the gate (api_upload_allowance) */
	struct body_watch *watch;    /* a chunked body's growing hold (api_messages.c) */
	char hold[STORE_ID_LEN + 1]; /* the hold's key, given back by api_job_free; "": none */
	struct srv_heavy *heavy;     /* its transcode, reserved at the gate; api_job_free gives it
	                                back unless api_run_heavy submitted it */
	char to[64];
	char idem[130];
	api_in_flight flight; /* its transcode under way, for a retry; or, a retry, its wait for
	                         another's (api_messages.c) */
	bool existed;
	store_signup signup; /* a sign-up: what store_family_signup did (api.c) */
	store_pair_keyed paired; /* a keyed pairing: what store_pairing_redeem_keyed did */
	codec_result cres;
	int codec_rc;
	bool transcoded; /* the codec ran over the recording (api_transcode_counted) */
	double transcode_s;
	uint64_t audio_bytes; /* the transcode's output, once the mailbox was asked */
	bool refused_before;  /* rc is a refusal storage gave before, not asked again (tus_op.c) */
	store_message msg;
	store_message *list;           /* freed by job_done */
	size_t nlist, shown;
	uint64_t next_seq;
	char *text;                    /* an answer made on the pool; freed by job_done */
	bool gzip;                     /* the request takes gzip (x->accepts_gzip) */
	char *gz;                      /* text gzipped on the pool (srv_gzip); freed by job_done */
	size_t gz_len;
	uint64_t since, latest;
	bool reset;                    /* list: `since` was past the mailbox's newest change */
	uint64_t wait_until;           /* long-poll: loop time (ms) to answer by; 0: at once */
	bool relisted;                 /* long-poll: a waiter listing again (its place is its) */
	uint64_t parked_ms;            /* long-poll listing again: when it first waited (its age) */
	uint64_t changes_seen;         /* long-poll: s->changes when it went to the pool to list */
	char reason[512];
	store_flag *flag;              /* flag_work; freed by job_done */
	/* family settings and export */
	uint64_t usage, quota;
	uint32_t retention_days;
	bool set_quota, set_retention;
	bool set_name, set_avatar;         /* PATCH of a member */
	const char *tmp_dir;               /* data/tmp: an export's file, an upload's body */
	struct api_export *export;         /* the family's export mark, held (api_family.c) */
	bool head_only;                    /* an export's HEAD: its length, nothing exported */
	unsigned left_out;                 /* messages an export left out: their audio unreadable */
	struct srv_upload_dir *upload_dir; /* data/uploads (a family's erasure) */
	int keep;
	/* kiosks */
	store_kiosk_link *links;       /* freed by job_done */
	size_t nlinks;
	int pin[4];                    /* zeroed by job_done */
	bool pin_sets_spent;           /* the family's hour of new PINs was spent when it came */
	unsigned pin_failures;
	int64_t pin_lock_ms;
	unsigned pin_failures_kiosk; /* a kiosk login: its kiosk's wrong PINs an hour */
};

int64_t api_now_ms(void); /* any thread */
void api_respond_json(srv_exchange *x, int status, json_t *obj); /* takes obj */
/* 429 code/message with Retry-After: the seconds until until_ms (api_now_ms's clock), at least 1 */
void api_respond_until(srv_exchange *x, int64_t until_ms, const char *code, const char *message);
/* 429 code/message with Retry-After: the seconds in `wait` ms, rounded up, at least 1. */
void api_respond_wait(srv_exchange *x, uint64_t wait, const char *code, const char *message);
/* api_respond_wait until the window that counted key's actions in r is over. */
void api_respond_spent(srv_exchange *x, srv_ratelimit *r, const char *key, const char *code,
                       const char *message);
json_t *api_body_object(srv_exchange *x);          /* NULL after answering 400/415 */
const char *api_name_field(json_t *obj, const char *key, bool required);
/* An idempotency key, the plain upload's header or a resumable upload's metadata: 1-128
 * printable ASCII characters (spaces included), one rule for both, so one key serves both. */
#define API_IDEMPOTENCY_KEY_MAX 128
bool api_idempotency_key_ok(const char *key, size_t len);
/* The request's Idempotency-Key header: true with *key NULL (none) or the key, checked by
 * api_idempotency_key_ok; false after answering 400 invalid_idempotency_key. A plain upload's
 * and a member's addition (POST .../members) read it so. */
bool api_idempotency_header(srv_exchange *x, const srv_slice **key);
/* The same for a request whose retry is handed a token (a sign-up, a pairing): the key is a
 * credential, so 16-128 characters; false after answering 400 invalid_idempotency_key. */
bool api_token_key_header(srv_exchange *x, const srv_slice **key);
/*
 * Idempotency keys are the caller's own: stored as "member:SHA-256(key)" (j->member's id), so
 * two members' equal keys (counters on two phones) never meet, and no key finds what another
 * made: a message (store_message_append) or a member (store_member_add_once).
 */
#define API_IDEM_STORED_LEN (STORE_ID_LEN + 2 + 2 * STORE_HASH_LEN)
void api_idempotency_stored(const api_job *j, const char *idem, char key[API_IDEM_STORED_LEN]);
/* The "avatar" of obj: "" when absent or empty (none), else 1-31 bytes of text; NULL if bad. */
const char *api_avatar_field(json_t *obj);
/*
 * Appends to the audit log, on the job's thread, after the change it records. The change
 * stands either way (it is done); a failure is logged as an "audit_failed" event and counted
 * (jiayin_audit_failures_total) when the job is done, never silently dropped.
 */
void api_audit(api_job *j, int64_t now_ms, const char *action, const char *family_id,
               const char *target, const char *detail);
json_t *api_family_json(const store_family *f);
json_t *api_member_json(const store_member *m);
json_t *api_device_json(const store_device *d);
void api_storage_failed(srv_exchange *x, int rc); /* 404/400/503/507 from a storage code */
/* The same answer for a failure storage gave before and that is answered again without
 * asking it (a refused finish's, tus_op.c): not counted in jiayin_storage_errors_total. */
void api_storage_failed_again(srv_exchange *x, int rc);
/* A done step's failure answered: j->rc 1 is 403 with forbidden_why, a storage code as
 * api_storage_failed; false when j->rc is 0 (or another value the step answers itself). */
bool api_failed(srv_exchange *x, api_job *j, const char *forbidden_why);
/* The job runner: authentication (when authed) then j->work on the pool, j->done on the loop. */
void api_job_run(void *arg);
/* After long work (a transcode): is the caller still who it was (its phone not revoked, its
 * member not removed; a kiosk child still a member paired to the kiosk, the kiosk not revoked,
 * though its session may be over)? If not, j->auth_rc says why (401). */
bool api_still_the_caller(api_job *j);
/* The same for a phone, by its token's hash: 0 while it is not revoked and still member_id's
 * (a member removed takes its phones with it), else the storage code (not_found). Pool. */
int api_phone_still(store *st, const uint8_t *token_hash, const char *member_id);
/* On the loop: the caller checked (a device, or a child's kiosk session), x's buffers count
 * in its share, not its address's (srv_buffer_owner); nothing when j has no checked caller. */
void api_caller_buffers(srv_exchange *x, const api_job *j);
void api_job_done(srv_exchange *x, void *arg);
void api_run(srv_exchange *x, api_job *j);          /* submits, or answers 503 */
/* The same as a heavy job of the family (a transcode, an export): see srv_job_submit_heavy;
 * in the place j->heavy reserved, when it did (never refused then). */
void api_run_heavy(srv_exchange *x, api_job *j, const char *family_id);
/* An endpoint with a caller and nothing to read first: authenticate, work, done. */
void api_start(srv_exchange *x, api_work_fn work, api_done_fn done);
void api_prepare(srv_exchange *x, api_job *j);      /* what api_run sets up, without running */
void api_job_free(api_job *j);                      /* what api_job_done frees */
/*
 * A child's kiosk session is in use while a request of it that outlasts its job is received or
 * worked on (a story's body, a resumable upload's PATCH, its transcode), not only as it arrived
 * (api_session_use.c): from j's check, its use is recorded every quarter of kiosk-idle-s until
 * api_session_use_end(j->in_use), and once more then, so the session goes idle kiosk-idle-s
 * after the request's end. Nothing for any other caller, for a long-poll, or when j->in_use is
 * set already. api_job_free ends it; a job copied (tus_op.c's finish) leaves it to the original.
 */
void api_session_use_begin(srv_server *s, api_job *j);
void api_session_use_end(api_session_use *u); /* NULL: nothing */
/* Gives back a family's export mark (api_family.c): another export of it may start. NULL ok. */
void api_export_release(struct api_export *e);
api_job *api_authed_job(srv_exchange *x, api_work_fn work, api_done_fn done);
/* Is there a bearer token at all? Else answers 401, so that a request without one hears 401
 * before any complaint about its body (whether the token is valid is the job's question). */
bool api_bearer_present(srv_exchange *x);
/*
 * A recording in j->body_fd (read on the pool; the caller closes it) becomes a message of the
 * path's family (j->param[0]) from the caller, to j->to (empty: everyone), under j->idem
 * (empty: none); done answers 201 (200 for a known key), 400, 413, 422 or 507.
 */
void api_upload_work(api_job *j);
/*
 * Pool side: what the family's unfinished uploads (resumable ones, and plain bodies being
 * received) may hold together: family-upload-bytes, or UPLOAD_ROOM_FACTOR times the room its
 * quota leaves (quota less stored audio) if that is less; all of family-upload-bytes when a
 * message is stored already under the caller's idempotency key `idem` (its retry needs no
 * room). 0, or a storage code.
 */
#define UPLOAD_ROOM_FACTOR 64
/* 507 uploads_hold_room: the mailbox has room for the recording, but the family's unfinished
 * uploads hold it (not "mailbox full": they finish, are deleted or expire). */
#define UPLOADS_HOLD_ROOM_WHY                                                                      \
	"the family's unfinished uploads hold the room this recording needs: finish or delete "    \
	"yours, or send it again later"
#define UPLOADS_HOLD_ROOM_RETRY "Retry-After: 60\r\n"
/* 507 quota_exceeded: the recording is larger than all the room the family has. */
#define QUOTA_EXCEEDED_WHY "the family's mailbox leaves no room for this recording"
/* 507 storage_full with Retry-After: unfinished uploads reached the disk's reserve
 * (SRV_UPLOAD_EDISK); counted in /metrics. */
#define STORAGE_KEPT_WHY "the server's disk is nearly full: send the recording again later"
#define STORAGE_KEPT_RETRY "Retry-After: 300\r\n"
void api_respond_disk_kept(srv_exchange *x);
int api_upload_allowance(api_job *j, const char *family, const char *idem, uint64_t *allowance);
/* The message the caller's idempotency key `idem` (not empty) was used for in `family`, as it is
 * now (deleted or hidden since too); STORE_ENOTFOUND if the key is unused. Pool. */
int api_upload_key_message(api_job *j, const char *family, const char *idem, store_message *out);
/*
 * Pool side: the path's family (param[0]) is the caller's (else j->rc = STORE_ENOTFOUND, for
 * a 404 like an unknown id), and the caller is a parent or caregiver / a parent (else
 * j->rc = 1, for a 403). False when j->rc was set.
 */
bool api_own_family(api_job *j);
bool api_grown_up(api_job *j);
bool api_parent(api_job *j);
/*
 * Pairing codes (16 digits), for phones and kiosks alike. Locked: answers 429 and is true.
 * Every attempt is counted towards the locks (per address and in all) on the loop before its
 * job is submitted, so attempts in flight at once cannot pass them: api_pairing_take counts
 * it (false after answering 429 when a lock is reached), and unless the done step finds the
 * code wrong (api_pairing_code_wrong), the attempt is given back when the job ends (a right
 * code, a full family, 401, 503: api_attempt_refund).
 */
/* A new device's token (256 random bits, base64url) in j->token, its hash in j->token_hash;
 * the answer that hands it out once (sign-up, pairing): the family, member, device, token. */
void api_new_token(api_job *j);
void api_respond_new_device(srv_exchange *x, api_job *j);
/* The same answer with another status: 200 for a keyed retry handed its device again. */
void api_respond_device(srv_exchange *x, api_job *j, int status);
/* STORE_ELIMIT from adding a member: answers 409 too_many_members (true), else false. */
bool api_too_many_members(srv_exchange *x, int rc);
bool api_pairing_locked(srv_exchange *x);
bool api_pairing_take(srv_exchange *x, api_job *j);
/*
 * An attempt (a pairing code, a kiosk's PIN) counted on the loop before its job, against limit
 * `a` under key `ka` and, if `b` is not NULL, `b` under `kb`: false, counting nothing, when
 * either is exhausted (the caller answers 429). Unless the job finds the attempt a wrong one
 * (attempt.counted = false: it stays counted), api_run and api_job_done give it back
 * (api_attempt_refund), so attempts in flight at once cannot pass a lock.
 */
bool api_attempt_take(srv_server *s, api_job *j, srv_ratelimit *a, const char *ka, srv_ratelimit *b,
                      const char *kb);
void api_attempt_refund(srv_server *s, api_job *j);
/*
 * A code as typed into digits (PAIRING_CODE_MAX): PAIRING_DIGITS digits, spaces and hyphens
 * anywhere left out ("1234 5678 9012 3456"; full-width ones too, as a Chinese keyboard types), the
 * last one checking the others (Damm), so that a typo (a wrong digit, two neighbours swapped) is
 * told before any lookup and counts towards no lock. 0; -1 no code; -2 its check digit is wrong.
 * For PAIRING_TTL_MS after the server started, PAIRING_DIGITS_OLD digits pass too: codes made
 * before the upgrade, until they expire.
 */
int api_pairing_code_parse(srv_exchange *x, const char *code, char *digits);
/* Answers a code api_pairing_code_parse refused (rc): 400, counted towards no lock. */
void api_pairing_code_refuse(srv_exchange *x, int rc);
/* A wrong, used or expired code: its attempt stays counted towards the locks; answers 400. */
void api_pairing_code_wrong(srv_exchange *x, api_job *j);
/* A fresh code in j->token, its keyed hash in hash (pool thread). */
void api_new_code(api_job *j, uint8_t hash[STORE_HASH_LEN]);
/* Something in family_id's mailbox changed: its waiting devices list again. */
void api_mailbox_changed(srv_server *s, const char *family_id);
/* The sessions of children at kiosk device_id ended (the next child's login, the home button):
 * their waiting long-polls are authenticated again now, and hear 401. */
void api_kiosk_sessions_ended(srv_server *s, const char *device_id);
void api_upload_done(srv_exchange *x, api_job *j);
/* On the loop: j's transcode, if it ran, counted once in /metrics, whatever became of the
 * recording (api_job_done, as a plain upload is answered; tus_op_end, a resumable one's). */
void api_transcode_counted(srv_server *s, api_job *j);
/* On the loop: f, a recording of family's under the key idem (none: nothing listed), sent
 * with the token whose hash is token_hash, is being transcoded and stored: listed in the
 * server's uploads_in_flight until api_in_flight_end, so that a plain upload of the same key
 * from the same phone meanwhile waits for it. A plain upload's (api_messages.c) or a resumable
 * upload's finish (tus_op.c). */
void api_in_flight_begin(srv_server *s, api_in_flight *f, const char *family,
                         const uint8_t token_hash[STORE_HASH_LEN], const char *idem);
/* The transcode is over: off the server's uploads_in_flight, and the retries that waited for
 * it go on (api_job_free; tus_op_end). */
void api_in_flight_end(api_in_flight *f);
/* On the loop: whether a plain upload of family's under the key idem, sent with the token whose
 * hash is token_hash, is being transcoded and stored (not a resumable upload's finish: a
 * creation of its key finds that upload, whole, and its own finish is locked). False without a
 * key. For a resumable upload of the key from the same phone, so as not to take the recording
 * again or transcode it twice (api_uploads.c, tus_op.c). */
bool api_plain_in_flight(const srv_server *s, const char *family,
                         const uint8_t token_hash[STORE_HASH_LEN], const char *idem);
/* 503 upload_in_progress with Retry-After: the same phone's recording of this key is in flight
 * (api_in_flight_find); sent again once it is stored, the key finds its message. */
void api_respond_in_flight(srv_exchange *x);
/* A message as the API shows it (deleted or hidden: its id, seq and state "deleted" only). */
json_t *api_message_json(const store_message *m);
/*
 * Who hears a message: everyone in the family when it is sent to all; when it is sent to one
 * member, that member, its sender, and the parents and caregivers. Other children do not.
 */
bool api_may_see(const store_message *m, const store_member *me);

#endif
