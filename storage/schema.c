/*
 * schema.c — the schemas, as numbered migration steps. Never edit a released step: add one.
 * Each step runs in its own transaction followed by PRAGMA user_version = its number, and the
 * migration tests build a database at every earlier version and migrate it forward.
 *
 * Directory: what spans families. Mailbox: one per family; audio lives in its own table so
 * listing never reads audio pages. The change sequence's high-water mark is max(messages.seq)
 * (since step 4: the larger of the highest rowid and the highest seq of a changed message,
 * both from the end of a b-tree): message rows are never removed (a deleted message stays as
 * a tombstone), and any future purge must keep the row that holds the highest seq.
 */
#include "internal.h"

static const migration directory_steps[] = {
	{"CREATE TABLE families ("
	 "  id TEXT PRIMARY KEY,"
	 "  name TEXT NOT NULL,"
	 "  created_ms INTEGER NOT NULL,"
	 "  quota_bytes INTEGER NOT NULL DEFAULT 0,"
	 "  retention_days INTEGER NOT NULL DEFAULT 0"
	 ") WITHOUT ROWID;"
	 "CREATE TABLE members ("
	 "  id TEXT PRIMARY KEY,"
	 "  family_id TEXT NOT NULL REFERENCES families(id) ON DELETE CASCADE,"
	 "  name TEXT NOT NULL,"
	 "  role TEXT NOT NULL CHECK (role IN ('parent', 'caregiver', 'child')),"
	 "  avatar TEXT NOT NULL DEFAULT '',"
	 "  created_ms INTEGER NOT NULL"
	 ") WITHOUT ROWID;"
	 "CREATE INDEX members_by_family ON members(family_id, created_ms);"
	 "CREATE TABLE schools ("
	 "  id TEXT PRIMARY KEY,"
	 "  name TEXT NOT NULL,"
	 "  created_ms INTEGER NOT NULL"
	 ") WITHOUT ROWID;"
	 "CREATE TABLE kiosks ("
	 "  id TEXT PRIMARY KEY,"
	 "  school_id TEXT NOT NULL REFERENCES schools(id) ON DELETE CASCADE,"
	 "  name TEXT NOT NULL,"
	 "  created_ms INTEGER NOT NULL"
	 ") WITHOUT ROWID;"
	 "CREATE TABLE devices ("
	 "  id TEXT PRIMARY KEY,"
	 "  token_hash BLOB NOT NULL UNIQUE,"
	 "  kind TEXT NOT NULL CHECK (kind IN ('personal', 'kiosk')),"
	 "  member_id TEXT REFERENCES members(id) ON DELETE CASCADE,"
	 "  kiosk_id TEXT REFERENCES kiosks(id) ON DELETE CASCADE,"
	 "  name TEXT NOT NULL DEFAULT '',"
	 "  created_ms INTEGER NOT NULL,"
	 "  last_seen_ms INTEGER,"
	 "  revoked_ms INTEGER,"
	 "  CHECK ((kind = 'personal') = (member_id IS NOT NULL))"
	 ") WITHOUT ROWID;"
	 "CREATE INDEX devices_by_member ON devices(member_id);"
	 "CREATE TABLE pairing_codes ("
	 "  code_hash BLOB PRIMARY KEY,"
	 "  family_id TEXT NOT NULL REFERENCES families(id) ON DELETE CASCADE,"
	 "  role TEXT NOT NULL CHECK (role IN ('parent', 'caregiver', 'child')),"
	 "  member_name TEXT NOT NULL DEFAULT '',"
	 "  kiosk_id TEXT REFERENCES kiosks(id) ON DELETE CASCADE,"
	 "  created_ms INTEGER NOT NULL,"
	 "  expires_ms INTEGER NOT NULL,"
	 "  used_ms INTEGER"
	 ") WITHOUT ROWID;"
	 "CREATE TABLE volunteers ("
	 "  id TEXT PRIMARY KEY,"
	 "  name TEXT NOT NULL,"
	 "  token_hash BLOB UNIQUE,"
	 "  created_ms INTEGER NOT NULL,"
	 "  disabled_ms INTEGER"
	 ") WITHOUT ROWID;"
	 "CREATE TABLE moderation_queue ("
	 "  id TEXT PRIMARY KEY,"
	 "  family_id TEXT NOT NULL REFERENCES families(id) ON DELETE CASCADE,"
	 "  message_id TEXT NOT NULL,"
	 "  reporter_id TEXT,"
	 "  reason TEXT NOT NULL,"
	 "  state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'claimed', 'resolved')),"
	 "  volunteer_id TEXT REFERENCES volunteers(id),"
	 "  resolution TEXT,"
	 "  created_ms INTEGER NOT NULL,"
	 "  updated_ms INTEGER NOT NULL"
	 ") WITHOUT ROWID;"
	 "CREATE INDEX moderation_by_state ON moderation_queue(state, created_ms);"
	 "CREATE TABLE audit_log ("
	 "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	 "  at_ms INTEGER NOT NULL,"
	 "  actor TEXT NOT NULL,"
	 "  action TEXT NOT NULL,"
	 "  family_id TEXT,"
	 "  target TEXT,"
	 "  detail TEXT"
	 ");"
	 "CREATE TRIGGER audit_log_append_only_update BEFORE UPDATE ON audit_log"
	 "  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
	 "CREATE TRIGGER audit_log_append_only_delete BEFORE DELETE ON audit_log"
	 "  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"},
	/* 2: the columns that family and kiosk deletes cascade through, and code expiry. */
	{"CREATE INDEX devices_by_kiosk ON devices(kiosk_id);"
	 "CREATE INDEX kiosks_by_school ON kiosks(school_id);"
	 "CREATE INDEX pairing_by_family ON pairing_codes(family_id);"
	 "CREATE INDEX pairing_by_kiosk ON pairing_codes(kiosk_id);"
	 "CREATE INDEX pairing_by_expiry ON pairing_codes(expires_ms);"
	 "CREATE INDEX moderation_by_family ON moderation_queue(family_id);"},
	/* 3: the row a health check rewrites, proving the directory takes durable writes. */
	{"CREATE TABLE health ("
	 "  id INTEGER PRIMARY KEY CHECK (id = 1),"
	 "  checked_ms INTEGER NOT NULL"
	 ");"},
	/* 4: school kiosks: the codes a kiosk shows, the children paired to it (with their
	 * picture PIN's hash and its lockout) and the one child session open on each kiosk. */
	{"CREATE TABLE kiosk_codes ("
	 "  code_hash BLOB PRIMARY KEY,"
	 "  kiosk_id TEXT NOT NULL REFERENCES kiosks(id) ON DELETE CASCADE,"
	 "  created_ms INTEGER NOT NULL,"
	 "  expires_ms INTEGER NOT NULL,"
	 "  used_ms INTEGER"
	 ") WITHOUT ROWID;"
	 "CREATE INDEX kiosk_codes_by_kiosk ON kiosk_codes(kiosk_id);"
	 "CREATE INDEX kiosk_codes_by_expiry ON kiosk_codes(expires_ms);"
	 "CREATE TABLE kiosk_links ("
	 "  id TEXT PRIMARY KEY,"
	 "  kiosk_id TEXT NOT NULL REFERENCES kiosks(id) ON DELETE CASCADE,"
	 "  member_id TEXT NOT NULL REFERENCES members(id) ON DELETE CASCADE,"
	 "  pin_hash TEXT NOT NULL,"
	 "  failures INTEGER NOT NULL DEFAULT 0,"
	 "  locked_until_ms INTEGER NOT NULL DEFAULT 0,"
	 "  created_ms INTEGER NOT NULL,"
	 "  UNIQUE (kiosk_id, member_id)"
	 ") WITHOUT ROWID;"
	 "CREATE INDEX kiosk_links_by_member ON kiosk_links(member_id);"
	 "CREATE TABLE kiosk_sessions ("
	 "  token_hash BLOB PRIMARY KEY,"
	 "  device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,"
	 "  link_id TEXT NOT NULL REFERENCES kiosk_links(id) ON DELETE CASCADE,"
	 "  created_ms INTEGER NOT NULL,"
	 "  last_used_ms INTEGER NOT NULL"
	 ") WITHOUT ROWID;"
	 "CREATE INDEX kiosk_sessions_by_device ON kiosk_sessions(device_id);"
	 "CREATE INDEX kiosk_sessions_by_link ON kiosk_sessions(link_id);"},
	/* 5: when the retention job last went through a family (it opens each once a day). */
	{"ALTER TABLE families ADD COLUMN retention_checked_ms INTEGER NOT NULL DEFAULT 0;"},
	/* 6: small named values about the installation (the server key's fingerprint). */
	{"CREATE TABLE meta ("
	 "  name TEXT PRIMARY KEY,"
	 "  value BLOB NOT NULL"
	 ") WITHOUT ROWID;"},
	/* 7: a member who left the family (store_member_remove) stays as a former member. */
	{"ALTER TABLE members ADD COLUMN removed_ms INTEGER;"},
	/* 8: a pairing code for a new phone of a member who is in the family already, and who
	 * made each code: a member who leaves takes its unused codes with it. */
	{"ALTER TABLE pairing_codes ADD COLUMN member_id TEXT REFERENCES members(id);"
	 "ALTER TABLE pairing_codes ADD COLUMN created_by TEXT REFERENCES members(id);"
	 "CREATE INDEX pairing_by_member ON pairing_codes(member_id) WHERE member_id IS NOT NULL;"
	 "CREATE INDEX pairing_by_creator ON pairing_codes(created_by) "
	 "  WHERE created_by IS NOT NULL;"},
	/* 9: and from which phone: a code works only while that phone is not revoked (a code made
	 * on a stolen phone must not outlive it). */
	{"ALTER TABLE pairing_codes ADD COLUMN created_by_device TEXT;"
	 "CREATE INDEX pairing_by_device ON pairing_codes(created_by_device) "
	 "  WHERE created_by_device IS NOT NULL;"},
	/* 10: who chose a kiosk link's PIN: a member who leaves takes the PINs it chose with it
	 * (it knows them). Links from before keep theirs (the chooser is not known). */
	{"ALTER TABLE kiosk_links ADD COLUMN pin_set_by TEXT REFERENCES members(id) "
	 "  ON DELETE SET NULL;"
	 "CREATE INDEX kiosk_links_by_pin_setter ON kiosk_links(pin_set_by) "
	 "  WHERE pin_set_by IS NOT NULL;"},
	/* 11: the families erased, recorded in the transaction that erases their rows: a mailbox
	 * file left by a crash after it is erased by the start's sweep; one the directory never
	 * knew (families/ restored beside another directory) is set aside, not erased. */
	{"CREATE TABLE erased_families ("
	 "  id TEXT PRIMARY KEY,"
	 "  erased_ms INTEGER NOT NULL"
	 ") WITHOUT ROWID;"},
	/* 12: links from before step 10 learn who chose their PIN from the audit log (the latest
	 * kiosk.link or kiosk.pin of the link by a member of the child's family; best effort: an
	 * audit write may have failed), and the PINs chosen by members who have left since are
	 * withdrawn with their sessions, as a removal does now (the review: step 10 alone left
	 * an aunt removed before the upgrade logging in as the child). */
	{"UPDATE kiosk_links SET pin_set_by = ("
	 "  SELECT a.actor FROM audit_log a JOIN members m ON m.id = a.actor "
	 "  JOIN members c ON c.id = kiosk_links.member_id "
	 "  WHERE a.target = kiosk_links.id AND a.action IN ('kiosk.link', 'kiosk.pin') "
	 "  AND m.family_id = c.family_id ORDER BY a.seq DESC LIMIT 1) "
	 "WHERE pin_set_by IS NULL;"
	 "DELETE FROM kiosk_sessions WHERE link_id IN (SELECT l.id FROM kiosk_links l "
	 "  JOIN members m ON m.id = l.pin_set_by WHERE m.removed_ms IS NOT NULL);"
	 "UPDATE kiosk_links SET pin_hash = '', pin_set_by = NULL, failures = 0, "
	 "  locked_until_ms = 0 WHERE pin_set_by IN "
	 "  (SELECT id FROM members WHERE removed_ms IS NOT NULL);"},
	/* 13: the families erased before step 11, from the audit log (family.delete, by the API
	 * or jiayinctl), so that a file of theirs found later (copied back, or left where its
	 * unlink failed) is erased, not set aside as unknown (the review). The audit row was
	 * written after the file's erasure, so a crash in between left no row: such a file is set
	 * aside. A family of that id still here is not one of them. */
	{"INSERT OR IGNORE INTO erased_families (id, erased_ms) "
	 "SELECT family_id, max(at_ms) FROM audit_log WHERE action = 'family.delete' AND "
	 "family_id IS NOT NULL AND family_id NOT IN (SELECT id FROM families) "
	 "GROUP BY family_id;"},
	/* 14: a kiosk's wrong PINs, all its tablets and children together, in the hour that
	 * counts them (store_kiosk_pin_attempt_bounded): the hour's start and its count. */
	{"ALTER TABLE kiosks ADD COLUMN pin_window_ms INTEGER NOT NULL DEFAULT 0;"
	 "ALTER TABLE kiosks ADD COLUMN pin_failures INTEGER NOT NULL DEFAULT 0;"},
	/* 15: a family's pairings of the hour (directory.c, family_pairings) are a range of each
	 * member's devices by when they were made, where the count read every device row its
	 * members ever had, on the writer every family shares (200,000 rows, as a token pairing in
	 * a loop leaves: 52 ms a count). The index on member_id alone is a prefix of this one. */
	{"CREATE INDEX devices_by_member_created ON devices(member_id, created_ms);"
	 "DROP INDEX devices_by_member;"},
	/* 16: the tablet (kiosk device) that made each kiosk code: revoking it deletes its unused
	 * codes, where they stayed live for their minutes, pairing children and counting toward
	 * the kiosk's bound. Codes from before name none and live out their minutes as before. */
	{"ALTER TABLE kiosk_codes ADD COLUMN created_by_device TEXT;"
	 "CREATE INDEX kiosk_codes_by_device ON kiosk_codes(created_by_device) "
	 "  WHERE created_by_device IS NOT NULL;"},
	/* 17: the key a member without a phone was added with (store_member_add_once: who asked
	 * and a hash of its Idempotency-Key), so that the request sent again finds that member,
	 * where a retry made a second one. Members from before have none. */
	{"ALTER TABLE members ADD COLUMN add_key TEXT;"
	 "CREATE UNIQUE INDEX members_by_add_key ON members(family_id, add_key) "
	 "  WHERE add_key IS NOT NULL;"},
	/* 18: the Idempotency-Key a sign-up was made with (its SHA-256), kept by the device it made
	 * (store_family_signup): the sign-up sent again, its answer lost, finds that family, member
	 * and device, where it made a second family. Devices from before have none. */
	{"ALTER TABLE devices ADD COLUMN signup_key BLOB;"
	 "CREATE UNIQUE INDEX devices_by_signup_key ON devices(signup_key) "
	 "  WHERE signup_key IS NOT NULL;"},
	/* 19: a pairing may keep its Idempotency-Key too, in signup_key (a key is one request's,
	 * a sign-up's or a pairing's: its unique index keeps it to one device either way), and the
	 * code it paired with (its hash; store_pairing_redeem_keyed): the pairing sent again with
	 * the same key and code finds that device, where it was refused the code it had used. A
	 * device with no code is a sign-up's. Devices from before have neither. */
	{"ALTER TABLE devices ADD COLUMN pair_code BLOB;"},
};

static const migration mailbox_steps[] = {
	{"CREATE TABLE counters ("
	 "  id INTEGER PRIMARY KEY CHECK (id = 1),"
	 "  seq INTEGER NOT NULL,"
	 "  bytes_used INTEGER NOT NULL"
	 ");"
	 "INSERT INTO counters VALUES (1, 0, 0);"
	 "CREATE TABLE messages ("
	 "  rowid INTEGER PRIMARY KEY,"
	 "  id TEXT NOT NULL UNIQUE,"
	 "  seq INTEGER NOT NULL UNIQUE,"
	 "  sender TEXT NOT NULL,"
	 "  recipient TEXT NOT NULL DEFAULT '',"
	 "  created_ms INTEGER NOT NULL,"
	 "  duration_ms INTEGER NOT NULL,"
	 "  lufs REAL NOT NULL,"
	 "  bytes INTEGER NOT NULL,"
	 "  waveform BLOB NOT NULL,"
	 "  sha256 BLOB NOT NULL,"
	 "  state INTEGER NOT NULL CHECK (state IN (1, 2, 3))"
	 ");"
	 "CREATE TABLE audio ("
	 "  message INTEGER PRIMARY KEY REFERENCES messages(rowid) ON DELETE CASCADE,"
	 "  data BLOB NOT NULL"
	 ");"
	 "CREATE TABLE receipts ("
	 "  message INTEGER NOT NULL REFERENCES messages(rowid) ON DELETE CASCADE,"
	 "  member TEXT NOT NULL,"
	 "  at_ms INTEGER NOT NULL,"
	 "  PRIMARY KEY (message, member)"
	 ") WITHOUT ROWID;"
	 "CREATE TABLE idempotency ("
	 "  key TEXT PRIMARY KEY,"
	 "  message INTEGER NOT NULL REFERENCES messages(rowid) ON DELETE CASCADE,"
	 "  created_ms INTEGER NOT NULL"
	 ") WITHOUT ROWID;"},
	/* 2: the counters row cost every append and change a page write; the sequence is
	 * max(seq) and the bytes in use are summed when a family opens (mailbox.c). */
	{"DROP TABLE counters;"},
	/* 3: a message a family keeps outlives its retention period; the retention job finds
	 * the old, unkept, undeleted ones through this index. */
	{"ALTER TABLE messages ADD COLUMN kept INTEGER NOT NULL DEFAULT 0;"
	 "CREATE INDEX messages_expiring ON messages(created_ms) WHERE state != 3 AND kept = 0;"},
	/* 4: a new message touches no index but its id's. Appends had written the messages row
	 * and three index leaves (id, seq, messages_expiring), 16 KiB each, to the WAL besides
	 * the audio. Now a message is appended with rowid = seq, and seq's index holds only the
	 * messages changed since (seq != rowid): "since N" is a rowid range for the others
	 * (mailbox.c). The retention index holds only `aged` messages: the retention job ages
	 * what was appended since its last visit before it looks (a suffix of the rowids).
	 * UNIQUE (seq) was a constraint's index: the table is rebuilt (same rowids; foreign keys
	 * are off during a step, db.c), rows from before are aged. */
	{"CREATE TABLE messages_v4 ("
	 "  rowid INTEGER PRIMARY KEY,"
	 "  id TEXT NOT NULL UNIQUE,"
	 "  seq INTEGER NOT NULL,"
	 "  sender TEXT NOT NULL,"
	 "  recipient TEXT NOT NULL DEFAULT '',"
	 "  created_ms INTEGER NOT NULL,"
	 "  duration_ms INTEGER NOT NULL,"
	 "  lufs REAL NOT NULL,"
	 "  bytes INTEGER NOT NULL,"
	 "  waveform BLOB NOT NULL,"
	 "  sha256 BLOB NOT NULL,"
	 "  state INTEGER NOT NULL CHECK (state IN (1, 2, 3)),"
	 "  kept INTEGER NOT NULL DEFAULT 0,"
	 "  aged INTEGER NOT NULL DEFAULT 1"
	 ");"
	 "INSERT INTO messages_v4 (rowid, id, seq, sender, recipient, created_ms, duration_ms, "
	 "  lufs, bytes, waveform, sha256, state, kept) "
	 "SELECT rowid, id, seq, sender, recipient, created_ms, duration_ms, lufs, bytes, "
	 "  waveform, sha256, state, kept FROM messages;"
	 "DROP TABLE messages;"
	 "ALTER TABLE messages_v4 RENAME TO messages;"
	 "CREATE UNIQUE INDEX messages_changed ON messages(seq) WHERE seq != rowid;"
	 "CREATE INDEX messages_due ON messages(created_ms) WHERE state != 3 AND kept = 0 "
	 "  AND aged = 1;"},
	/* 5: a deleted message's row kept its waveform, hash, duration, loudness and who heard
	 * it; deleting now clears them (mailbox.c), and this clears the tombstones made before. */
	{"UPDATE messages SET duration_ms = 0, lufs = 0, bytes = 0, waveform = x'', sha256 = x'' "
	 "  WHERE state = 3;"
	 "DELETE FROM receipts WHERE message IN (SELECT rowid FROM messages WHERE state = 3);"},
	/* 6: a copy made by a backup (backup.c) carries the change number it was taken at and a
	 * floor 2^32 above it: restored in place, the mailbox numbers its changes from the floor,
	 * and a client's `since` between the two names changes it no longer has (store.h,
	 * store_mailbox_restored). The live mailbox has no row. */
	{"CREATE TABLE seq_floor ("
	 "  id INTEGER PRIMARY KEY CHECK (id = 1),"
	 "  restored_latest INTEGER NOT NULL,"
	 "  floor INTEGER NOT NULL"
	 ");"},
	/* 7: the family a mailbox is of, written when it is created: a backup-family file copied
	 * to another family's name would play one family's voices to another (store.c,
	 * owner_check). A mailbox from before learns it at its next open. */
	{"CREATE TABLE owner ("
	 "  id INTEGER PRIMARY KEY CHECK (id = 1),"
	 "  family TEXT NOT NULL"
	 ");"},
	/* 8: when a restored copy's floor was taken up (store.c, floor_apply): NULL in a copy as
	 * the backup made it, so that the same copy restored twice numbers from above the first
	 * restore's numbers (the operations review: a phone missed what the second restore
	 * numbered like the first). A mailbox restored before this step that has numbered a change
	 * above its floor since is live, not a copy as made (a copy's changes are all below it):
	 * its phones hold those numbers, and raising its floor now would tell them all to start
	 * over for nothing. It is marked as taken up (0). */
	{"ALTER TABLE seq_floor ADD COLUMN applied_ms INTEGER;"
	 "UPDATE seq_floor SET applied_ms = 0 WHERE floor < max("
	 "  coalesce((SELECT max(seq) FROM messages WHERE seq != rowid), 0),"
	 "  coalesce((SELECT max(rowid) FROM messages), 0));"},
};

/* secure_delete: an erased family's names, its devices and its flags' reasons must not stay
 * in freed space of the directory (its writes are few and small, so it costs little). */
const schema directory_schema = {"directory", directory_steps,
				 sizeof directory_steps / sizeof directory_steps[0], 4096, true};
/* 16 KiB pages: a 150 KB clip is ~10 overflow pages instead of ~37 at 4 KiB. */
const schema mailbox_schema = {"mailbox", mailbox_steps,
			       sizeof mailbox_steps / sizeof mailbox_steps[0], 16384, false};
