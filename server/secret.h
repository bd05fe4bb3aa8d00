/*
 * secret.h — the server's secret key and what is signed with it: short-lived audio URLs (and
 * the kiosk session one may carry, sealed), and the keyed hash that pairing codes are stored
 * under. Any thread.
 */
#ifndef JIAYIN_SERVER_SECRET_H
#define JIAYIN_SERVER_SECRET_H

#include <stddef.h>
#include <stdint.h>

#define SRV_SECRET_LEN 32
#define SRV_SIGNATURE_CHARS 22 /* 128 bits of HMAC-SHA-256, base64url without padding */

/*
 * Read <data_dir>/secret, or create it (256 random bits, mode 0600, written to a temporary
 * name, synced, then renamed into place) on the first start. Blocking: call before the loop
 * runs. 0 or a negative errno; a file of the wrong size is -EINVAL (never silently replaced:
 * every signed URL and stored pairing code depends on it).
 */
int srv_secret_load(const char *data_dir, uint8_t key[SRV_SECRET_LEN]);
/* Read <data_dir>/secret, never creating it: -ENOENT when there is none. */
int srv_secret_read(const char *data_dir, uint8_t key[SRV_SECRET_LEN]);
/* What the data directory remembers of its key (never the key): 16 bytes of an HMAC. */
#define SRV_SECRET_FINGERPRINT_LEN 16
void srv_secret_fingerprint(const uint8_t key[SRV_SECRET_LEN],
			    uint8_t fp[SRV_SECRET_FINGERPRINT_LEN]);

/*
 * The signature of an audio URL: it binds the family, the message and the expiry time
 * (seconds since 1970) together, and for a URL issued to a child's kiosk session the session
 * too (`session`, session_len bytes: the sealed reference below; NULL for none). A session's
 * URL is signed under a label of its own, so it never passes for an ordinary one with the
 * session taken out. `sig` receives SRV_SIGNATURE_CHARS characters and a NUL.
 */
void srv_sign_audio(const uint8_t key[SRV_SECRET_LEN], const char *family_id,
		    const char *message_id, int64_t expires_s, const char *session,
		    size_t session_len, char sig[SRV_SIGNATURE_CHARS + 1]);
/* 1 if `sig` (len bytes, untrusted) is that signature, compared in constant time; else 0. */
int srv_signature_ok(const uint8_t key[SRV_SECRET_LEN], const char *family_id,
		     const char *message_id, int64_t expires_s, const char *session,
		     size_t session_len, const char *sig, size_t len);

/*
 * A kiosk session in a URL: its token's hash sealed (XSalsa20-Poly1305 under a key derived
 * from the server's, a random nonce) and in base64url, so the URL names the session without
 * showing the hash the store keeps. `out` receives SRV_SESSION_REF_CHARS characters and a
 * NUL. srv_session_open: the hash from `ref` (len bytes, untrusted); 0, or -1 when it is not
 * one we sealed.
 */
#define SRV_SESSION_REF_CHARS 96 /* 24 bytes of nonce, 32 of hash, 16 of tag: 72 in base64 */
#define SRV_SESSION_HASH_LEN 32
void srv_session_seal(const uint8_t key[SRV_SECRET_LEN], const uint8_t hash[SRV_SESSION_HASH_LEN],
		      char out[SRV_SESSION_REF_CHARS + 1]);
int srv_session_open(const uint8_t key[SRV_SECRET_LEN], const char *ref, size_t len,
		     uint8_t hash[SRV_SESSION_HASH_LEN]);

/* The keyed hash (HMAC-SHA-256) of a pairing code: a stolen database does not give away
 * codes by trying all 10^8. */
void srv_hash_pairing_code(const uint8_t key[SRV_SECRET_LEN], const char *code,
			   uint8_t out[32]);

#endif
