/*
 * test_config.c — the server's settings (server/config.c): the config file's syntax as
 * docs/operations.md shows it, errors that name the file and the line, the bytes that used to
 * be misread (a byte-order mark read as part of the first key, a NUL cutting a line short, a
 * control character in a path), a setting given twice in one file, flags over the file, and
 * --print-config's output read back to the same settings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

static int parse(srv_config *c, const char *text, size_t len, char *err, size_t errlen)
{
	srv_config_defaults(c);
	err[0] = 0;
	return srv_config_parse(c, text, len, "jiayin.conf", err, errlen);
}

#define PARSE(c, lit, err) parse(c, lit, sizeof lit - 1, err, sizeof err)

static void operations_example(void **state)
{
	(void)state;
	srv_config c;
	char err[256];
	assert_int_equal(PARSE(&c,
	                       "# jiayin listens on loopback only; nginx faces the internet.\n"
	                       "listen = 127.0.0.1:8080\n"
	                       "data = /var/lib/jiayin\n"
	                       "log-file = /var/log/jiayin/requests.log\n"
	                       "trust-proxy = 127.0.0.1\n",
	                       err),
	                 0);
	assert_string_equal(c.listen_host, "127.0.0.1");
	assert_int_equal(c.listen_port, 8080);
	assert_string_equal(c.data_dir, "/var/lib/jiayin");
	assert_string_equal(c.log_file, "/var/log/jiayin/requests.log");
	assert_int_equal(c.trusted_proxy_count, 1);
	assert_string_equal(c.trusted_proxies[0], "127.0.0.1");
	assert_int_equal(c.threads, 4); /* what the file does not name keeps its default */
}

/* A file saved by Windows' Notepad: a byte-order mark, CRLF, no newline at the end. */
static void bom_crlf_comments(void **state)
{
	(void)state;
	srv_config c;
	char err[256];
	assert_int_equal(PARSE(&c,
	                       "\xEF\xBB\xBF"
	                       "threads = 8\r\n"
	                       "\r\n"
	                       "   # indented comment\r\n"
	                       "log-format=logfmt   # after the value\r\n"
	                       "\tlisten\t=\t[::1]:9000",
	                       err),
	                 0);
	assert_int_equal(c.threads, 8);
	assert_int_equal(c.log_format, SRV_LOG_LOGFMT);
	assert_string_equal(c.listen_host, "::1");
	assert_int_equal(c.listen_port, 9000);
}

static void errors_name_the_line(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		const char *err;
	} cases[] = {
	    {"threads = 4\n\nthread = 4\n", "jiayin.conf:3: unknown setting 'thread'"},
	    {"# one\nlisten 127.0.0.1:80\n", "jiayin.conf:2: expected SETTING = VALUE"},
	    {"threads = 0\n", "jiayin.conf:1: threads: '0' is not a number in range"},
	    /* 1 % of a 1 MiB buffer-memory holds no upload's stage: every upload would be 503. */
	    {"upload-buffer-percent = 9\n",
	     "jiayin.conf:1: upload-buffer-percent: '9' is not a number in range"},
	    {"threads = 4x\n", "jiayin.conf:1: threads: '4x' is not a number in range"},
	    {"threads = 99999999999999999999999\n",
	     "jiayin.conf:1: threads: '99999999999999999999999' is not a number in range"},
	    {"listen = 256.0.0.1:80\n",
	     "jiayin.conf:1: listen: '256.0.0.1:80' is not ADDRESS:PORT"},
	    {"listen = 127.0.0.1:65536\n",
	     "jiayin.conf:1: listen: '127.0.0.1:65536' is not ADDRESS:PORT"},
	    {"\n\ntrust-proxy = 10.0.0.1,,10.0.0.2\n",
	     "jiayin.conf:3: trust-proxy: '10.0.0.1,,10.0.0.2' is not a list of IP addresses"},
	    {"trust-proxy = 10.0.0.1,\n",
	     "jiayin.conf:1: trust-proxy: '10.0.0.1,' is not a list of IP addresses"},
	    {"trust-proxy = ,10.0.0.1\n",
	     "jiayin.conf:1: trust-proxy: ',10.0.0.1' is not a list of IP addresses"},
	    /* More proxies than there is room for are said as such, not as a bad address. */
	    {"trust-proxy = 10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.5,10.0.0.6,10.0.0.7,"
	     "10.0.0.8,10.0.0.9,10.0.0.10,10.0.0.11,10.0.0.12,10.0.0.13,10.0.0.14,10.0.0.15,"
	     "10.0.0.16,10.0.0.17\n",
	     "jiayin.conf:1: trust-proxy: more than 16 addresses"},
	    {"log-format = text\n", "jiayin.conf:1: log-format: 'text' is neither json nor logfmt"},
	    {"data =\n", "jiayin.conf:1: data: '' is empty or too long"},
	    {"data = /srv/\x1bjiayin\n",
	     "jiayin.conf:1: data: '/srv/\x1bjiayin' has a control character"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		srv_config c;
		char err[256];
		assert_int_equal(parse(&c, cases[i].text, strlen(cases[i].text), err, sizeof err),
		                 -1);
		assert_string_equal(err, cases[i].err);
	}
}

/* A NUL used to end the line where it stood: "data = /srv/a\0b" set data to "/srv/a". */
static void nul_byte_is_refused(void **state)
{
	(void)state;
	srv_config c;
	char err[256];
	assert_int_equal(PARSE(&c, "threads = 2\ndata = /srv/a\0b\n", err), -1);
	assert_string_equal(err, "jiayin.conf:2: NUL byte in the line");
	assert_string_equal(c.data_dir, "./jiayin-data");
}

static void long_lines(void **state)
{
	(void)state;
	srv_config c;
	char err[256];
	/* The longest line allowed, a comment, with CRLF; then one byte more. */
	char text[SRV_CONFIG_LINE_MAX + 16];
	memset(text, 'x', sizeof text);
	text[0] = '#';
	memcpy(text + SRV_CONFIG_LINE_MAX - 1, "\r\n", 2);
	memcpy(text + SRV_CONFIG_LINE_MAX + 1, "threads=3", 9);
	assert_int_equal(parse(&c, text, SRV_CONFIG_LINE_MAX + 10, err, sizeof err), 0);
	assert_int_equal(c.threads, 3);
	/* SRV_CONFIG_LINE_MAX bytes and CRLF: as long as with LF alone (the review: refused). */
	text[SRV_CONFIG_LINE_MAX - 1] = 'x';
	memcpy(text + SRV_CONFIG_LINE_MAX, "\r\n", 2);
	memcpy(text + SRV_CONFIG_LINE_MAX + 2, "threads=5", 9);
	assert_int_equal(parse(&c, text, SRV_CONFIG_LINE_MAX + 11, err, sizeof err), 0);
	assert_int_equal(c.threads, 5);
	memcpy(text + SRV_CONFIG_LINE_MAX - 1, "\r\n", 2);
	memcpy(text + SRV_CONFIG_LINE_MAX + 1, "threads=3", 9);
	text[SRV_CONFIG_LINE_MAX - 1] = 'x';
	text[SRV_CONFIG_LINE_MAX] = 'x';
	assert_int_equal(parse(&c, text, SRV_CONFIG_LINE_MAX + 10, err, sizeof err), -1);
	assert_string_equal(err, "jiayin.conf:1: line too long");
}

static char *print_to_string(const srv_config *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	assert_non_null(f);
	srv_config_print(c, f);
	assert_int_equal(fclose(f), 0);
	return text;
}

/* What --print-config prints is a config file that gives the same settings. */
static void print_reads_back(void **state)
{
	(void)state;
	srv_config c, back;
	char err[256];
	assert_int_equal(PARSE(&c,
	                       "listen = [fe80::1]:0\nthreads = 7\nlog-format = logfmt\n"
	                       "trust-proxy = 10.0.0.1,::1\nfamily-quota = 1125899906842624\n"
	                       "log-file = /var/log/j.log\nmax-chunk-bytes = 4096\n",
	                       err),
	                 0);
	char *text = print_to_string(&c);
	assert_non_null(strstr(text, "\nlisten = [fe80::1]:0\n"));
	assert_non_null(strstr(text, "\nfamily-quota = 1125899906842624\n"));
	assert_non_null(strstr(text, "\n# static-dir =\n")); /* unset: commented out */
	assert_int_equal(parse(&back, text, strlen(text), err, sizeof err), 0);
	assert_memory_equal(&back, &c, sizeof c); /* both start from memset defaults */
	free(text);

	/* The longest paths (the fuzzer found them cut short in an early version). */
	char line[2048];
	size_t n = (size_t)snprintf(line, sizeof line, "data = /");
	memset(line + n, 'd', sizeof c.data_dir - 2);
	n += sizeof c.data_dir - 2;
	n += (size_t)snprintf(line + n, sizeof line - n, "\n");
	assert_int_equal(parse(&c, line, n, err, sizeof err), 0);
	assert_int_equal(strlen(c.data_dir), sizeof c.data_dir - 1);
	text = print_to_string(&c);
	assert_int_equal(parse(&back, text, strlen(text), err, sizeof err), 0);
	assert_string_equal(back.data_dir, c.data_dir);
	free(text);

	srv_config_defaults(&c);
	text = print_to_string(&c);
	assert_non_null(strstr(text, "\n# trust-proxy =\n"));
	assert_int_equal(parse(&back, text, strlen(text), err, sizeof err), 0);
	assert_memory_equal(&back, &c, sizeof c);
	free(text);
}

/*
 * A value a config file cannot hold ('#' starts a comment there, spaces around a value are
 * trimmed) is refused as a flag too: --print-config printed `data = /tmp/a#b`, which reads
 * back as /tmp/a (the review of --print-config).
 */
static void flags_a_file_cannot_say(void **state)
{
	(void)state;
	static const char *const values[] = {"/srv/a#b", "/srv/x ", " /srv/x"};
	for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
		srv_config c;
		char err[512];
		srv_config_defaults(&c);
		char *argv[] = {"jiayin", "--data", (char *)values[i], NULL};
		assert_int_equal(srv_config_from_args(&c, 3, argv, err, sizeof err), -1);
		assert_non_null(strstr(err, "has a '#' or begins or ends with a space"));
		assert_string_equal(c.data_dir, "./jiayin-data");
	}
}

/*
 * A file of two settings read with --threads 6 before it (flags_first) or after it: the flag
 * wins, the file's other setting stands. Then `line` added as the file's third: the start is
 * refused with "FILE:3: " and `why`.
 */
static void file_then_line(bool flags_first, const char *line, const char *why)
{
	char path[64];
	snprintf(path, sizeof path, "/tmp/jiayin-test-config-%ld.conf", (long)getpid());
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	static const char text[] = "threads = 2\nkiosk-idle-s = 60\n";
	assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
	close(fd);

	srv_config c;
	char err[512];
	srv_config_defaults(&c);
	char *first[] = {"jiayin", "--threads", "6", "--config", path, NULL};
	char *last[] = {"jiayin", "--config", path, "--threads", "6", NULL};
	char **argv = flags_first ? first : last;
	assert_int_equal(srv_config_from_args(&c, 5, argv, err, sizeof err), 0);
	assert_int_equal(c.threads, 6);
	assert_int_equal(c.kiosk_idle_s, 60);

	FILE *f = fopen(path, "a");
	assert_non_null(f);
	fputs(line, f);
	fclose(f);
	srv_config_defaults(&c);
	assert_int_equal(srv_config_from_args(&c, 5, argv, err, sizeof err), -1);
	char want[600];
	snprintf(want, sizeof want, "%s:3: %s", path, why);
	assert_string_equal(err, want);
	unlink(path);

	srv_config_defaults(&c);
	char *missing[] = {"jiayin", "--config", path, NULL};
	assert_int_equal(srv_config_from_args(&c, 3, missing, err, sizeof err), -1);
	assert_non_null(strstr(err, "cannot open config file"));
}

/* Flags override the file wherever --config stands; errors from the file name it. */
static void flags_over_file(void **state)
{
	(void)state;
	file_then_line(true, "pin-failures = 1000\n",
	               "pin-failures: '1000' is not a number in range");
}

/* A setting given twice in one file is refused, naming the file, the line and the setting: it
 * was quietly the last one, and an operator who wrote listen near the top and again near the
 * bottom got the one they did not mean. Flags still override the file's one. */
static void given_twice(void **state)
{
	(void)state;
	srv_config c;
	char err[256];
	assert_int_equal(PARSE(&c,
	                       "listen = 127.0.0.1:8080\n"
	                       "threads = 2\n"
	                       "# the port the proxy uses\n"
	                       "  listen=127.0.0.1:9090  # again\r\n",
	                       err),
	                 -1);
	assert_string_equal(err, "jiayin.conf:4: listen given again, first on line 1");
	assert_int_equal(PARSE(&c, "threads = 2\nthreads = 2\n", err), -1);
	assert_string_equal(err, "jiayin.conf:2: threads given again, first on line 1");
	file_then_line(false, "threads = 3\n", "threads given again, first on line 1");
}

/* buffers-per-address is never below buffers-per-client: a share raised before the address's
 * limit existed keeps its effect, and --print-config says so. */
static void address_holds_a_client(void **state)
{
	(void)state;
	srv_config c;
	char err[512];
	srv_config_defaults(&c);
	char *raised[] = {"jiayin", "--buffers-per-client", "100", NULL};
	assert_int_equal(srv_config_from_args(&c, 3, raised, err, sizeof err), 0);
	assert_int_equal(c.buffers_per_client, 100);
	assert_int_equal(c.buffers_per_address, 100);
	srv_config_defaults(&c);
	char *both[] = {"jiayin", "--buffers-per-address", "10", "--buffers-per-client", "8", NULL};
	assert_int_equal(srv_config_from_args(&c, 5, both, err, sizeof err), 0);
	assert_int_equal(c.buffers_per_address, 10);
	srv_config_defaults(&c);
	char *low[] = {"jiayin", "--buffers-per-address", "4", NULL};
	assert_int_equal(srv_config_from_args(&c, 3, low, err, sizeof err), 0);
	assert_int_equal(c.buffers_per_address, 16);
}

/* A directory given as the file (`--config /etc/jiayin/`) is said to be one: the message said
 * "Input/output error", which sends an operator looking at the disk. */
static void directory_as_file(void **state)
{
	(void)state;
	srv_config c;
	char err[512];
	srv_config_defaults(&c);
	assert_int_equal(srv_config_load(&c, "/tmp", err, sizeof err), -1);
	assert_string_equal(err, "cannot read config file /tmp: Is a directory");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(operations_example),
	    cmocka_unit_test(bom_crlf_comments),
	    cmocka_unit_test(errors_name_the_line),
	    cmocka_unit_test(nul_byte_is_refused),
	    cmocka_unit_test(long_lines),
	    cmocka_unit_test(print_reads_back),
	    cmocka_unit_test(flags_over_file),
	    cmocka_unit_test(given_twice),
	    cmocka_unit_test(flags_a_file_cannot_say),
	    cmocka_unit_test(address_holds_a_client),
	    cmocka_unit_test(directory_as_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
