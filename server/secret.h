/*
 * secret.h — the server's secret key and what is signed with it: short-lived audio URLs (and
 * the phone or kiosk session each was issued to, sealed), and the keyed hash that pairing
 * codes are stored under. Any thread.
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

/* Whom an audio URL was issued to: its query names the holder's sealed token hash. */
typedef enum {
	SRV_AUDIO_PHONE = 1, /* "&phone=REF": a family member's phone */
	SRV_AUDIO_SESSION,   /* "&session=REF": a child's session at a school kiosk */
} srv_audio_holder;

/*
 * The signature of an audio URL: it binds the family, the message, the expiry time (seconds
 * since 1970) and its holder (`ref`, ref_len bytes: the sealed reference below) together,
 * under a label for each kind of holder, so a URL never passes for another kind's. `sig`
 * receives SRV_SIGNATURE_CHARS characters and a NUL.
 */
void srv_sign_audio(const uint8_t key[SRV_SECRET_LEN], const char *family_id,
                    const char *message_id, int64_t expires_s, srv_audio_holder holder,
                    const char *ref, size_t ref_len, char sig[SRV_SIGNATURE_CHARS + 1]);
/* 1 if `sig` (len bytes, untrusted) is that signature, compared in constant time; else 0. */
int srv_signature_ok(const uint8_t key[SRV_SECRET_LEN], const char *family_id,
                     const char *message_id, int64_t expires_s, srv_audio_holder holder,
                     const char *ref, size_t ref_len, const char *sig, size_t len);

/*
 * A URL's holder (a phone or a kiosk session): its token's hash sealed (XSalsa20-Poly1305
 * under a key derived from the server's, a random nonce) and in base64url, so the URL names
 * its holder without showing the hash the store keeps. `out` receives SRV_SESSION_REF_CHARS
 * characters and a NUL. srv_session_open: the hash from `ref` (len bytes, untrusted); 0, or -1 when
 * it is not one we sealed.
 */
#define SRV_SESSION_REF_CHARS 96 /* 24 bytes of nonce, 32 of hash, 16 of tag: 72 in base64 */
#define SRV_SESSION_HASH_LEN 32
void srv_session_seal(const uint8_t key[SRV_SECRET_LEN], const uint8_t hash[SRV_SESSION_HASH_LEN],
		      char out[SRV_SESSION_REF_CHARS + 1]);
int srv_session_open(const uint8_t key[SRV_SECRET_LEN], const char *ref, size_t len,
		     uint8_t hash[SRV_SESSION_HASH_LEN]);

/* The keyed hash (HMAC-SHA-256) of a pairing code: a stolen database does not give away
 * codes by trying all 10^15. */
void srv_hash_pairing_code(const uint8_t key[SRV_SECRET_LEN], const char *code,
			   uint8_t out[32]);

#endif
