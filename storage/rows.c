/*
 * rows.c — small helpers every storage file uses to run its queries: one-row lookups and
 * lists through a row-reading function, updates by id, and writes whose constraint failures
 * are told apart (a foreign key: what it refers to is missing; a CHECK or NOT NULL: a bad
 * argument; UNIQUE: it exists already). Written first in directory.c by a helper session;
 * moved here when store.c's family and member queries turned out to repeat them.
 */
#include "internal.h"

/* A step's result: constraint failures told apart, the rest as store_map_sqlite. */
static int map_write(int r)
{
	switch (r) {
	case SQLITE_DONE:
		return 0;
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		return STORE_ENOTFOUND; /* what it refers to does not exist */
	case SQLITE_CONSTRAINT_CHECK:
	case SQLITE_CONSTRAINT_NOTNULL:
		return STORE_EINVAL;
	default:
		return store_map_sqlite(r);
	}
}

/* sqlite3_step() of a write, expecting SQLITE_DONE, with constraint failures told apart. A
 * write outside a transaction commits in its step: its I/O error is told as the file system's
 * (store_map_db: a read-only remount, a disk full at fsync), as a COMMIT's is. */
int step_write(sqlite3_stmt *st)
{
	return stmt_write_error(st, sqlite3_step(st));
}

int stmt_write_error(sqlite3_stmt *st, int r)
{
	int rc = map_write(r);
	return rc == STORE_EIO || rc == STORE_ECORRUPT ? stmt_error(st, r) : rc;
}

int count_and_first(conn *c, const char *sql, const char *id, int64_t t2, int64_t t3, unsigned *n,
                    int64_t *first_ms)
{
	int rc = 0;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (!st)
		return rc;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, t2);
	sqlite3_bind_int64(st, 3, t3);
	int r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		*n = (unsigned)sqlite3_column_int64(st, 0);
		*first_ms = sqlite3_column_int64(st, 1);
	} else {
		rc = stmt_error(st, r);
	}
	sqlite3_reset(st);
	return rc;
}

key text_key(const char *s)
{
	return (key){s, -1};
}

key hash_key(const uint8_t *h)
{
	return (key){h, STORE_HASH_LEN};
}

void bind_key(sqlite3_stmt *st, int i, key k)
{
	if (k.len < 0)
		sqlite3_bind_text(st, i, k.data, -1, SQLITE_STATIC);
	else
		sqlite3_bind_blob(st, i, k.data, k.len, SQLITE_STATIC);
}

/* Bind text, or NULL for a NULL or empty string (optional ids). */
void bind_optional(sqlite3_stmt *st, int i, const char *s)
{
	if (s && *s)
		sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

/* The row `sql` finds for `k` on connection `c`, through `fn`; STORE_ENOTFOUND if none. */
int row_one(conn *c, const char *sql, key k, row_fn fn, void *out)
{
	int rc = 0;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (!st)
		return rc;
	bind_key(st, 1, k);
	int r = sqlite3_step(st);
	if (r == SQLITE_ROW)
		fn(st, out);
	rc = r == SQLITE_ROW ? 0 : r == SQLITE_DONE ? STORE_ENOTFOUND : stmt_error(st, r);
	sqlite3_reset(st);
	return rc;
}

/* row_one on a read connection of the directory. */
int read_one(store *s, const char *sql, key k, row_fn fn, void *out)
{
	conn *c;
	int rc = db_read_begin(s->directory, &c);
	if (rc < 0)
		return rc;
	rc = row_one(c, sql, k, fn, out);
	db_read_end(s->directory, c);
	return rc;
}

/*
 * Up to `max` rows that `sql` finds for the text `param`, each `size` bytes apart in `out`;
 * *more says whether rows were left unread past `max` (review finding: lists stopped at `max`
 * without saying so, and a family's 65th kiosk link vanished from its list). A caller with
 * more NULL takes *n == max as "there may be more" and asks again with more room.
 */
int read_list(store *s, const char *sql, const char *param, row_fn fn, void *out, size_t size,
              size_t max, size_t *n, bool *more)
{
	conn *c;
	*n = 0;
	if (more)
		*more = false;
	int rc = db_read_begin(s->directory, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (st) {
		sqlite3_bind_text(st, 1, param, -1, SQLITE_STATIC);
		int r = SQLITE_DONE;
		while ((r = sqlite3_step(st)) == SQLITE_ROW) {
			if (*n == max) { /* one row past max: there are more */
				if (more)
					*more = true;
				break;
			}
			fn(st, (char *)out + size * (*n)++);
		}
		rc = r == SQLITE_ROW || r == SQLITE_DONE ? 0 : stmt_error(st, r);
		sqlite3_reset(st);
	}
	db_read_end(s->directory, c);
	return rc;
}

int read_many(store *s, const char *sql, const char *param, row_fn fn, void *out, size_t size,
              size_t max, size_t *n)
{
	return read_list(s, sql, param, fn, out, size, max, n, NULL);
}

/* Run an UPDATE whose last parameter is an id; STORE_ENOTFOUND if it matched no row. */
int update_by_id(conn *c, sqlite3_stmt *st, int id_param, const char *id)
{
	sqlite3_bind_text(st, id_param, id, -1, SQLITE_STATIC);
	int rc = step_write(st);
	return rc == 0 && sqlite3_changes(c->db) == 0 ? STORE_ENOTFOUND : rc;
}

int stamp_by_id(store *s, const char *sql, const char *id, int64_t now_ms, int64_t arg)
{
	if (store_id_check(id) < 0)
		return STORE_ENOTFOUND;
	int rc = 0;
	conn *c = db_write_begin(s->directory);
	sqlite3_stmt *st = conn_stmt(c, sql, &rc);
	if (st) {
		sqlite3_bind_int64(st, 1, now_ms);
		if (sqlite3_bind_parameter_count(st) >= 3)
			sqlite3_bind_int64(st, 3, arg);
		rc = update_by_id(c, st, 2, id);
	}
	db_write_end(s->directory);
	return rc;
}
