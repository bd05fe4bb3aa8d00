/*
 * test_io.c — the buffered reader every parser reads through: skips that end exactly at the
 * end of the file (a bug a helper found in the WebM work: they reported truncation), skips
 * past the end, and which of "truncated" and "too large" a lying size gets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define FILE_BYTES 200000

static uint8_t file[FILE_BYTES];

/* Byte i of the file: a hash of i, so that no shift of a skip (by 256, by the buffer's 64 KiB)
 * lands on the same bytes. */
static uint8_t byte_at(size_t i)
{
	return (uint8_t)((uint32_t)(i + 1) * 2654435761u >> 24);
}

static void open_mem(codec_in *in, codec_source *src, codec_memory_source *mem, size_t len,
		     uint64_t max)
{
	for (size_t i = 0; i < len; i++)
		file[i] = byte_at(i);
	codec_source_memory(src, mem, file, len);
	assert_int_equal(in_init(in, src, max), 0);
}

static void skip_to_exact_end_of_file(void **st)
{
	(void)st;
	codec_in in;
	codec_source src;
	codec_memory_source mem;
	uint8_t b[10];
	size_t got;
	open_mem(&in, &src, &mem, FILE_BYTES, 0);
	assert_int_equal(in_read_exact(&in, b, 10), 0);
	/* Far beyond the buffer, ending on the last byte: a seek, and it is no error. */
	assert_int_equal(in_skip(&in, FILE_BYTES - 10), 0);
	assert_int_equal(in_tell(&in), FILE_BYTES);
	assert_int_equal(in_read(&in, b, 10, &got), 0);
	assert_int_equal(got, 0);
	in_free(&in);
}

static void skip_lands_on_the_right_byte(void **st)
{
	(void)st;
	codec_in in;
	codec_source src;
	codec_memory_source mem;
	uint8_t b[16];
	open_mem(&in, &src, &mem, FILE_BYTES, 0);
	assert_int_equal(in_skip(&in, 150001), 0);
	assert_int_equal(in_tell(&in), 150001);
	assert_int_equal(in_read_exact(&in, b, sizeof b), 0);
	assert_memory_equal(b, file + 150001, sizeof b);
	/* Within the buffer, then past what it holds from where the read left it. */
	assert_int_equal(in_skip(&in, 100), 0);
	assert_int_equal(in_read_exact(&in, b, sizeof b), 0);
	assert_memory_equal(b, file + 150001 + 16 + 100, sizeof b);
	in_free(&in);
	open_mem(&in, &src, &mem, FILE_BYTES, 0);
	assert_int_equal(in_read_exact(&in, b, 3), 0);
	assert_int_equal(in_skip(&in, 70000), 0);
	assert_int_equal(in_tell(&in), 70003);
	assert_int_equal(in_read_exact(&in, b, sizeof b), 0);
	assert_memory_equal(b, file + 70003, sizeof b);
	in_free(&in);
	/* A source that cannot seek: the skip reads its way there. */
	open_mem(&in, &src, &mem, FILE_BYTES, 0);
	src.seek = NULL;
	assert_int_equal(in_read_exact(&in, b, 3), 0);
	assert_int_equal(in_skip(&in, 150001), 0);
	assert_int_equal(in_tell(&in), 150004);
	assert_int_equal(in_read_exact(&in, b, sizeof b), 0);
	assert_memory_equal(b, file + 150004, sizeof b);
	in_free(&in);
}

static void skip_past_the_end_is_truncated(void **st)
{
	(void)st;
	codec_in in;
	codec_source src;
	codec_memory_source mem;
	open_mem(&in, &src, &mem, FILE_BYTES, 0);
	assert_int_equal(in_skip(&in, FILE_BYTES + 1), CODEC_ETRUNCATED);
	in_free(&in);
}

static void lying_size_on_a_small_file_is_truncated(void **st)
{
	(void)st;
	/* A 1 KB file claiming a 4 GB chunk under a 1 MB limit: truncated, not too large. */
	codec_in in;
	codec_source src;
	codec_memory_source mem;
	open_mem(&in, &src, &mem, 1000, 1 << 20);
	assert_int_equal(in_skip(&in, 4000000000ull), CODEC_ETRUNCATED);
	in_free(&in);
}

static void skip_past_the_limit_of_a_big_file_is_too_large(void **st)
{
	(void)st;
	codec_in in;
	codec_source src;
	codec_memory_source mem;
	open_mem(&in, &src, &mem, FILE_BYTES, 100000);
	assert_int_equal(in_skip(&in, 150000), CODEC_ETOOLARGE);
	in_free(&in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(skip_to_exact_end_of_file),
		cmocka_unit_test(skip_lands_on_the_right_byte),
		cmocka_unit_test(skip_past_the_end_is_truncated),
		cmocka_unit_test(lying_size_on_a_small_file_is_truncated),
		cmocka_unit_test(skip_past_the_limit_of_a_big_file_is_too_large),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
