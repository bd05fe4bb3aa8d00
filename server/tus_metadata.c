/*
 * tus_metadata.c — Upload-Metadata: comma-separated pairs of a key and its base64 value (padded
 * or not), spaces and tabs around pairs allowed (HTTP's OWS around a list's commas). Every
 * length is checked before a byte is copied; a decoded value with a NUL in it is refused (it
 * would end the C string early); an idempotency_key with one is invalid_idempotency_key, as
 * one with any other control byte is.
 */
#include "tus_metadata.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

enum { VALUE_OK, VALUE_NOT_BASE64, VALUE_TOO_LONG, VALUE_NUL };

/* One value, base64 (padded or not), decoded into out (NUL-terminated). A value that decodes
 * to more than out holds is too long, not "not base64": an idempotency key of 300 characters
 * is invalid_idempotency_key, as one of 129 is. */
static int value(const char *v, size_t n, char *out, size_t cap)
{
	size_t len = 0;
	const char *end = NULL;
	bool too_long = false;
	errno = 0;
	if (sodium_base642bin((unsigned char *)out, cap - 1, v, n, NULL, &len, &end,
			      sodium_base64_VARIANT_ORIGINAL) != 0 || end != v + n) {
		too_long = errno == ERANGE;
		errno = 0;
		if (sodium_base642bin((unsigned char *)out, cap - 1, v, n, NULL, &len, &end,
				      sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0 ||
		    end != v + n)
			return too_long || errno == ERANGE ? VALUE_TOO_LONG : VALUE_NOT_BASE64;
	}
	out[len] = '\0';
	return memchr(out, '\0', len) == NULL ? VALUE_OK : VALUE_NUL;
}

const char *srv_tus_metadata_parse(const char *p, size_t n, srv_tus_metadata *m,
				   const char **code)
{
	*code = "invalid_upload_metadata";
	m->has_family = m->has_to = m->has_idem = false;
	m->family[0] = m->to[0] = m->idem[0] = '\0';
	for (size_t i = 0; p && i <= n;) {
		size_t end = i;
		while (end < n && p[end] != ',')
			end++;
		size_t a = i, b = end;
		while (a < b && (p[a] == ' ' || p[a] == '\t'))
			a++;
		while (b > a && (p[b - 1] == ' ' || p[b - 1] == '\t'))
			b--;
		size_t k = a;
		while (k < b && p[k] != ' ')
			k++;
		const char *key = p + a, *val = k < b ? p + k + 1 : p + b;
		size_t klen = k - a, vlen = k < b ? b - k - 1 : 0;
		char decoded[SRV_TUS_METADATA_VALUE_MAX + 1];
		bool *seen = NULL;
		char *dst = NULL;
		size_t dcap = 0;
		if (klen == 9 && memcmp(key, "family_id", 9) == 0) {
			seen = &m->has_family, dst = m->family, dcap = m->family_cap;
		} else if (klen == 2 && memcmp(key, "to", 2) == 0) {
			seen = &m->has_to, dst = m->to, dcap = m->to_cap;
		} else if (klen == 15 && memcmp(key, "idempotency_key", 15) == 0) {
			seen = &m->has_idem, dst = m->idem, dcap = m->idem_cap;
		}
		if (klen == 0)
			return "Upload-Metadata: an empty key";
		if (seen && *seen)
			return "Upload-Metadata: a key came twice";
		int v = seen ? value(val, vlen, decoded, sizeof decoded) : VALUE_OK;
		if (v == VALUE_NOT_BASE64 || (v == VALUE_NUL && seen != &m->has_idem))
			return "Upload-Metadata: a value is not base64";
		if (v == VALUE_NUL || v == VALUE_TOO_LONG || (seen && strlen(decoded) >= dcap)) {
			if (seen == &m->has_idem) {
				*code = "invalid_idempotency_key";
				return "idempotency_key: 1-128 printable ASCII characters";
			}
			return "Upload-Metadata: a value is too long";
		}
		if (seen) {
			*seen = true;
			memcpy(dst, decoded, strlen(decoded) + 1);
		}
		i = end + 1;
	}
	return NULL;
}

bool srv_tus_metadata_format(const char *family, const char *to, const char *idem, char *out,
                             size_t cap)
{
	const char *keys[] = {"family_id", "to", "idempotency_key"};
	const char *vals[] = {family, to, idem};
	size_t used = 0;
	if (cap == 0)
		return false;
	out[0] = '\0';
	for (size_t i = 0; i < 3; i++) {
		size_t vlen = vals[i] ? strlen(vals[i]) : 0;
		if (vlen == 0)
			continue;
		size_t klen = strlen(keys[i]);
		size_t b64 = sodium_base64_ENCODED_LEN(vlen, sodium_base64_VARIANT_ORIGINAL);
		/* ",key " then the value and its NUL (b64 counts the NUL) */
		if (used + (used > 0) + klen + 1 + b64 > cap)
			return false;
		if (used > 0)
			out[used++] = ',';
		memcpy(out + used, keys[i], klen);
		used += klen;
		out[used++] = ' ';
		sodium_bin2base64(out + used, b64, (const unsigned char *)vals[i], vlen,
		                  sodium_base64_VARIANT_ORIGINAL);
		used += b64 - 1;
	}
	return true;
}
