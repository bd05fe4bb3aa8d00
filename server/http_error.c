/*
 * http_error.c — names, sentences and HTTP statuses of the SRV_HTTP_E* codes. The names are a
 * contract with API clients (they appear in error bodies and logs): never rename one, only add.
 */
#include "http_parse.h"

static const struct {
	int status;
	const char *code;
	const char *message;
} errors[SRV_HTTP_ERROR_COUNT] = {
    {200, "ok", "success"},
    {500, "out_of_memory", "out of memory"},
    {500, "invalid_argument", "a parser limit is outside its allowed range"},
    {500, "parser_state", "the parser was called out of order"},
    {400, "bare_cr", "a CR in the request head is not followed by LF"},
    {400, "bare_lf", "a line of the request head ends in LF without CR"},
    {400, "control_byte", "the request head contains NUL or another control byte"},
    {400, "obs_fold", "a header line starts with whitespace (obsolete line folding)"},
    {400, "leading_empty_lines", "more than one empty line precedes the request line"},
    {431, "head_too_large", "the request head is larger than allowed"},
    {431, "too_many_headers", "the request has more header lines than allowed"},
    {400, "bad_request_line", "the request line is malformed"},
    {501, "method_not_implemented", "the request method is not implemented"},
    {414, "target_too_long", "the request target is longer than allowed"},
    {400, "bad_target", "the request target contains invalid bytes or escapes"},
    {400, "target_form", "only origin-form targets (and '*' for OPTIONS) are accepted"},
    {505, "version_not_supported", "only HTTP/1.0 and HTTP/1.1 are supported"},
    {400, "bad_header", "a header name is not a token or a header value has invalid bytes"},
    {400, "host_missing", "an HTTP/1.1 request has no Host header"},
    {400, "host_duplicate", "the request has more than one Host header"},
    {400, "bad_host", "the Host header is not a valid host and port"},
    {400, "smuggling_cl_te", "the request has both Content-Length and Transfer-Encoding"},
    {400, "content_length_duplicate", "the request has more than one Content-Length header"},
    {400, "bad_content_length", "Content-Length is not a non-negative decimal number"},
    {400, "bad_transfer_encoding", "Transfer-Encoding does not end in one 'chunked'"},
    {501, "transfer_coding_not_implemented", "only the chunked transfer coding is implemented"},
    {417, "expectation_failed", "the only expectation supported is 100-continue"},
    {400, "bad_chunk", "the chunked body is malformed"},
    {413, "chunk_too_large", "a chunk is larger than allowed"},
    {400, "trailer_rejected", "trailer fields after a chunked body are not accepted"},
    {413, "body_too_large", "the request body is larger than allowed"},
    {400, "bad_request", "the request is malformed"},
};

static int index_of(int err)
{
	return (err <= 0 && err > -SRV_HTTP_ERROR_COUNT) ? -err : -1;
}

int srv_parse_status(int err)
{
	int i = index_of(err);
	return i < 0 ? 500 : errors[i].status;
}

const char *srv_parse_errcode(int err)
{
	int i = index_of(err);
	return i < 0 ? "unknown_error" : errors[i].code;
}

const char *srv_parse_strerror(int err)
{
	int i = index_of(err);
	return i < 0 ? "unknown error" : errors[i].message;
}
