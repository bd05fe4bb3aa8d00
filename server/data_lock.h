/*
 * data_lock.h — one server at a time on a data directory: an exclusive lock on
 * <data>/server.lock, taken at start before anything in the directory is read or written
 * (the sweep of families/ and uploads/, migrations, the key), and held for the process's
 * life. Blocking: call before the loop runs.
 */
#ifndef JIAYIN_SERVER_DATA_LOCK_H
#define JIAYIN_SERVER_DATA_LOCK_H

/*
 * The data directory made if it is missing (0700, its name synced into its parent), its lock
 * file opened (made 0600 if missing) and locked, our process id written in it. 0 with *fd the
 * held lock (close-on-exec: it goes with the process); -EWOULDBLOCK when another process holds
 * it, *holder then its process id as it wrote it (0 if unknown), and nothing else is touched;
 * else a negative errno: of making the directory or opening the file (-ENOENT, -EACCES, ...),
 * or of the lock itself when the file system keeps none (-ENOLCK, -EOPNOTSUPP, -EINVAL).
 */
int srv_data_lock(const char *dir, int *fd, long *holder);

/*
 * Whether another process holds the data directory's lock (1, *holder its process id or 0),
 * or not or unknown (0). Makes nothing: for a start refused before it took the lock (its port
 * in use), to say that a server runs on this data directory.
 */
int srv_data_lock_held(const char *dir, long *holder);

#endif
