/*
 * io.c — buffered input over a codec_source, and the stock sources and sinks.
 *
 * Parsers never touch a codec_source directly: codec_in gives them exact reads, skips and peeks
 * with one byte limit enforced in one place (max_input_bytes -> CODEC_ETOOLARGE). The buffer is
 * a fixed CODEC_IN_BUFSIZE, so input memory does not depend on the file.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int in_init(codec_in *in, const codec_source *src, uint64_t max_bytes)
{
	memset(in, 0, sizeof *in);
	in->src = src;
	in->max_bytes = max_bytes ? max_bytes : CODEC_DEFAULT_MAX_INPUT_BYTES;
	in->buf = malloc(CODEC_IN_BUFSIZE);
	return in->buf ? 0 : CODEC_ENOMEM;
}

void in_free(codec_in *in)
{
	free(in->buf);
	in->buf = NULL;
}

/* Top the buffer up so that at least `want` unread bytes are there, or the input has ended. */
static int in_fill(codec_in *in, size_t want)
{
	if (in->len - in->pos >= want || in->eof)
		return 0;
	if (in->pos > 0) {
		memmove(in->buf, in->buf + in->pos, in->len - in->pos);
		in->len -= in->pos;
		in->pos = 0;
	}
	while (in->len < want && !in->eof) {
		size_t got = 0;
		int rc = in->src->read(in->src->ctx, in->buf + in->len, CODEC_IN_BUFSIZE - in->len,
				       &got);
		if (rc < 0)
			return rc;
		if (got == 0)
			in->eof = true;
		in->len += got;
		in->fetched += got;
		if (in->fetched > in->max_bytes)
			return CODEC_ETOOLARGE;
	}
	return 0;
}

int in_read(codec_in *in, void *dst, size_t n, size_t *got)
{
	uint8_t *out = dst;
	size_t done = 0;
	while (done < n) {
		size_t want = n - done < CODEC_IN_BUFSIZE ? n - done : CODEC_IN_BUFSIZE;
		int rc = in_fill(in, want);
		if (rc < 0)
			return rc;
		size_t avail = in->len - in->pos;
		if (avail == 0)
			break;
		size_t take = avail < n - done ? avail : n - done;
		memcpy(out + done, in->buf + in->pos, take);
		in->pos += take;
		in->consumed += take;
		done += take;
	}
	*got = done;
	return 0;
}

int in_read_exact(codec_in *in, void *dst, size_t n)
{
	size_t got;
	int rc = in_read(in, dst, n, &got);
	if (rc < 0)
		return rc;
	return got == n ? 0 : CODEC_ETRUNCATED;
}

int in_skip(codec_in *in, uint64_t n)
{
	size_t avail = in->len - in->pos;
	if (n <= avail) {
		in->pos += n;
		in->consumed += n;
		return 0;
	}
	/* Drop what is buffered, then seek past the rest when the source can. */
	n -= avail;
	in->consumed += avail;
	in->pos = in->len = 0;
	uint64_t target = in->consumed + n;
	if (in->src->seek && !in->eof && target <= in->max_bytes) {
		/* Land one byte short and read that byte: it proves the skipped bytes exist,
		 * also when the skip ends exactly at the end of the file. */
		int rc = in->src->seek(in->src->ctx, target - 1);
		if (rc < 0)
			return rc;
		in->consumed = in->fetched = target - 1;
		if ((rc = in_fill(in, 1)) < 0)
			return rc;
		if (in->len == 0)
			return CODEC_ETRUNCATED;
		in->pos = 1;
		in->consumed = target;
		return 0;
	}
	/* No seek, or a skip past the byte limit (reading finds out: end of file or too large). */
	while (n > 0) {
		int rc = in_fill(in, 1);
		if (rc < 0)
			return rc;
		size_t have = in->len - in->pos;
		if (have == 0)
			return CODEC_ETRUNCATED;
		size_t take = have < n ? have : (size_t)n;
		in->pos += take;
		in->consumed += take;
		n -= take;
	}
	return 0;
}

int in_peek(codec_in *in, const uint8_t **p, size_t n, size_t *avail)
{
	if (n > CODEC_IN_BUFSIZE)
		n = CODEC_IN_BUFSIZE;
	int rc = in_fill(in, n);
	if (rc < 0)
		return rc;
	*p = in->buf + in->pos;
	*avail = in->len - in->pos < n ? in->len - in->pos : n;
	return 0;
}

/* Memory source. */
static int mem_read(void *ctx, uint8_t *buf, size_t len, size_t *got)
{
	codec_memory_source *m = ctx;
	size_t left = m->len - m->pos;
	size_t n = len < left ? len : left;
	if (n)
		memcpy(buf, m->data + m->pos, n);
	m->pos += n;
	*got = n;
	return 0;
}

static int mem_seek(void *ctx, uint64_t offset)
{
	codec_memory_source *m = ctx;
	m->pos = offset < m->len ? (size_t)offset : m->len;
	return 0;
}

void codec_source_memory(codec_source *src, codec_memory_source *mem, const void *data,
			 size_t len)
{
	mem->data = data;
	mem->len = len;
	mem->pos = 0;
	*src = (codec_source){.read = mem_read, .seek = mem_seek, .ctx = mem};
}

/* File descriptor source (pread, so the fd's own offset is left alone). */
static int fd_read(void *ctx, uint8_t *buf, size_t len, size_t *got)
{
	codec_fd_source *f = ctx;
	for (;;) {
		ssize_t n = pread(f->fd, buf, len, (off_t)f->pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return CODEC_EIO;
		f->pos += (uint64_t)n;
		*got = (size_t)n;
		return 0;
	}
}

static int fd_seek(void *ctx, uint64_t offset)
{
	codec_fd_source *f = ctx;
	f->pos = offset;
	return 0;
}

void codec_source_fd(codec_source *src, codec_fd_source *fds, int fd)
{
	fds->fd = fd;
	fds->pos = 0;
	*src = (codec_source){.read = fd_read, .seek = fd_seek, .ctx = fds};
}

static int fd_write(void *ctx, const uint8_t *buf, size_t len)
{
	int fd = *(int *)ctx;
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return CODEC_EIO;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int fd_reset(void *ctx)
{
	int fd = *(int *)ctx;
	if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0)
		return CODEC_EIO;
	return 0;
}

static int fd_patch(void *ctx, uint64_t offset, const uint8_t *buf, size_t len)
{
	int fd = *(int *)ctx;
	while (len > 0) {
		ssize_t n = pwrite(fd, buf, len, (off_t)offset);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return CODEC_EIO;
		buf += n;
		len -= (size_t)n;
		offset += (uint64_t)n;
	}
	return 0;
}

void codec_sink_fd(codec_sink *sink, int *fd)
{
	*sink = (codec_sink){.write = fd_write, .patch = fd_patch, .reset = fd_reset, .ctx = fd};
}

static int buffer_write(void *ctx, const uint8_t *data, size_t len)
{
	codec_buffer *b = ctx;
	if (b->max && len > b->max - b->len)
		return CODEC_ETOOLARGE;
	if (len > b->cap - b->len) {
		size_t cap = b->cap ? b->cap : 16384;
		while (cap - b->len < len) {
			if (cap > SIZE_MAX / 2)
				return CODEC_ENOMEM;
			cap *= 2;
		}
		uint8_t *p = realloc(b->data, cap);
		if (!p)
			return CODEC_ENOMEM;
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

static int buffer_reset(void *ctx)
{
	((codec_buffer *)ctx)->len = 0;
	return 0;
}

static int buffer_patch(void *ctx, uint64_t offset, const uint8_t *data, size_t len)
{
	codec_buffer *b = ctx;
	if (offset > b->len || len > b->len - offset)
		return CODEC_EINVAL;
	memcpy(b->data + offset, data, len);
	return 0;
}

void codec_sink_buffer(codec_sink *sink, codec_buffer *buf)
{
	*sink = (codec_sink){.write = buffer_write,
			     .patch = buffer_patch,
			     .reset = buffer_reset,
			     .ctx = buf};
}
