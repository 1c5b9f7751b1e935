/*
 * Power-loss model for crates/cli/tests/power_loss.rs, loaded with LD_PRELOAD.
 *
 * For every regular file under $UNDO_TRACK_DIR (except SQLite's -shm, which is rebuilt on
 * open), each data write first appends an undo record to $UNDO_LOG_DIR/<name>.undo: the
 * offset, the file's size before the write, and the bytes the write is about to overwrite.
 * fsync/fdatasync of the file empties its undo log: everything up to then is durable. The
 * record is appended with the real write() before the data write is applied, so a SIGKILL
 * between the two leaves a record for a write that never happened, which undoes nothing.
 *
 * After a SIGKILL the test applies each log backwards (restore the pre-images, cut the file
 * to its recorded size), leaving every file as it was at its last fsync: a power loss that
 * drops every write the disk was not told to make durable.
 *
 * A file created under $UNDO_TRACK_DIR is listed in $UNDO_LOG_DIR/created until the directory
 * itself is fsynced: before that, a power cut may lose its directory entry, and the test
 * deletes it.
 *
 * When the file named by UNDO_KILL_FILE appears, holding a number K, the process SIGKILLs
 * itself right after its K-th tracked write from then on: the power cut lands after a write
 * that is not yet synced, never in a quiet moment.
 *
 * UNDO_IGNORE_FSYNC=1 keeps the logs across fsync (a disk that ignores flushes), for the
 * control run that must observe loss.
 *
 * Record: int64 offset, int64 old_size, int64 length, then `length` pre-image bytes.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FDS 65536

/* The undo log of each tracked descriptor, -1 when the descriptor is not tracked. */
static int undo_fd[MAX_FDS];
/* Whether each descriptor is the data directory itself. */
static char dir_fd[MAX_FDS];
static char created_log[PATH_MAX];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char track_dir[PATH_MAX];
static char log_dir[PATH_MAX];
static int ignore_fsync;
static char kill_file[PATH_MAX];
static long countdown = -1; /* writes left before the SIGKILL; -1 until armed */

static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real_creat)(const char *, mode_t);
static int (*real_creat64)(const char *, mode_t);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev64)(int, const struct iovec *, int, off64_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off64_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_close)(int);

__attribute__((constructor)) static void init(void) {
    for (int i = 0; i < MAX_FDS; i++)
        undo_fd[i] = -1;
    real_open = dlsym(RTLD_NEXT, "open");
    real_open64 = dlsym(RTLD_NEXT, "open64");
    real_openat = dlsym(RTLD_NEXT, "openat");
    real_openat64 = dlsym(RTLD_NEXT, "openat64");
    real_creat = dlsym(RTLD_NEXT, "creat");
    real_creat64 = dlsym(RTLD_NEXT, "creat64");
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    real_writev = dlsym(RTLD_NEXT, "writev");
    real_pwritev = dlsym(RTLD_NEXT, "pwritev");
    real_pwritev64 = dlsym(RTLD_NEXT, "pwritev64");
    real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
    real_ftruncate64 = dlsym(RTLD_NEXT, "ftruncate64");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_close = dlsym(RTLD_NEXT, "close");
    const char *t = getenv("UNDO_TRACK_DIR"), *l = getenv("UNDO_LOG_DIR");
    if (t && l && strlen(t) + 2 < PATH_MAX && strlen(l) + 2 < PATH_MAX) {
        snprintf(track_dir, sizeof track_dir, "%s/", t);
        snprintf(log_dir, sizeof log_dir, "%s", l);
        snprintf(created_log, sizeof created_log, "%s/created", l);
    }
    const char *k = getenv("UNDO_KILL_FILE");
    if (k && strlen(k) < PATH_MAX)
        snprintf(kill_file, sizeof kill_file, "%s", k);
    const char *i = getenv("UNDO_IGNORE_FSYNC");
    ignore_fsync = i && strcmp(i, "1") == 0;
}

/* The undo log's path for `path` when `path` is a tracked file; 0 otherwise. */
static int log_path_for(const char *path, char *out) {
    if (!track_dir[0] || !path || path[0] != '/')
        return 0;
    size_t n = strlen(track_dir);
    if (strncmp(path, track_dir, n) != 0)
        return 0;
    const char *rest = path + n;
    size_t len = strlen(rest);
    if (len == 0 || (len > 4 && strcmp(rest + len - 4, "-shm") == 0))
        return 0;
    int w = snprintf(out, PATH_MAX, "%s/", log_dir);
    for (const char *c = rest; *c && w < PATH_MAX - 6; c++)
        out[w++] = *c == '/' ? '%' : *c; /* a nested file gets a flat log name */
    memcpy(out + w, ".undo", 6);
    return 1;
}

static void write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t w = real_write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            abort(); /* a lost undo record would make the model lie: stop loudly */
        buf += w;
        len -= (size_t)w;
    }
}

/* `path` (relative to `dirfd` unless absolute) as an absolute path in `full`; 0 if unknown. */
static int resolve(int dirfd, const char *path, char *full) {
    if (path[0] == '/') {
        snprintf(full, PATH_MAX, "%s", path);
        return 1;
    }
    if (dirfd == AT_FDCWD && getcwd(full, PATH_MAX)) {
        size_t n = strlen(full);
        snprintf(full + n, PATH_MAX - n, "/%s", path);
        return 1;
    }
    return 0;
}

/* Starts tracking `fd`, just opened for writing at `full`. */
static void track(const char *full, int fd) {
    char logp[PATH_MAX];
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || !log_path_for(full, logp))
        return;
    int lfd = real_open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    pthread_mutex_lock(&lock);
    if (undo_fd[fd] >= 0)
        real_close(undo_fd[fd]);
    undo_fd[fd] = lfd;
    pthread_mutex_unlock(&lock);
}

/*
 * A file this process created exists after a power cut only once its directory was synced:
 * its name goes to $UNDO_LOG_DIR/created until an fsync of the data directory.
 */
static void note_created(const char *full) {
    char logp[PATH_MAX], line[PATH_MAX + 1];
    if (!log_path_for(full, logp))
        return;
    int n = snprintf(line, sizeof line, "%s\n", full + strlen(track_dir));
    pthread_mutex_lock(&lock);
    int fd = real_open(created_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        abort();
    write_all(fd, line, (size_t)n);
    real_close(fd);
    pthread_mutex_unlock(&lock);
}

/* Records what an open that returned `fd` means for the model. */
static void opened(int dirfd, const char *path, int flags, int fresh, int fd) {
    char full[PATH_MAX];
    if (fd < 0 || fd >= MAX_FDS || !track_dir[0] || !resolve(dirfd, path, full))
        return;
    size_t n = strlen(track_dir);
    if (strncmp(full, track_dir, n - 1) == 0 && (full[n - 1] == 0 || strcmp(full + n - 1, "/") == 0)) {
        dir_fd[fd] = 1; /* the data directory itself: its fsync makes new names durable */
        return;
    }
    if ((flags & O_ACCMODE) != O_RDONLY)
        track(full, fd);
    if (fresh)
        note_created(full);
}


/*
 * Appends the undo record for a change of `len` bytes at `offset` of `fd`. Called with
 * `lock` held, so records of one file stay in the order their writes were applied.
 */
static void record(int fd, int64_t offset, int64_t len) {
    int lfd = undo_fd[fd];
    struct stat st;
    if (fstat(fd, &st) != 0)
        abort();
    int64_t old_size = st.st_size;
    int64_t keep = 0;
    if (offset < old_size)
        keep = (offset + len < old_size ? offset + len : old_size) - offset;
    size_t head = 3 * sizeof(int64_t);
    char *buf = malloc(head + (size_t)keep);
    if (!buf)
        abort();
    int64_t fields[3] = {offset, old_size, keep};
    memcpy(buf, fields, head);
    int64_t got = 0;
    while (got < keep) {
        ssize_t r = pread(fd, buf + head + got, (size_t)(keep - got), offset + got);
        if (r <= 0)
            abort();
        got += r;
    }
    write_all(lfd, buf, head + (size_t)keep);
    free(buf);
}

/* Counts a tracked write down to the SIGKILL once armed. Called with `lock` held. */
static void maybe_die(void) {
    if (!kill_file[0])
        return;
    if (countdown < 0) {
        if (access(kill_file, R_OK) != 0)
            return;
        char buf[32] = {0};
        int fd = real_open(kill_file, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, buf, sizeof buf - 1) <= 0)
            abort();
        real_close(fd);
        countdown = atol(buf);
        if (countdown < 1)
            abort();
    }
    if (--countdown == 0)
        raise(SIGKILL);
}

static int tracked(int fd) { return fd >= 0 && fd < MAX_FDS && undo_fd[fd] >= 0; }

static size_t iov_len(const struct iovec *iov, int n) {
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    return total;
}

/* The offset a write() without one lands at. */
static int64_t current_offset(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0 && (flags & O_APPEND)) {
        struct stat st;
        return fstat(fd, &st) == 0 ? st.st_size : 0;
    }
    return lseek(fd, 0, SEEK_CUR);
}

#define OPEN_BODY(call)                                                                        \
    mode_t mode = 0;                                                                           \
    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {                               \
        va_list ap;                                                                            \
        va_start(ap, flags);                                                                   \
        mode = va_arg(ap, mode_t);                                                             \
        va_end(ap);                                                                            \
    }                                                                                          \
    int fresh = (flags & O_CREAT) && faccessat(dirfd, path, F_OK, 0) != 0;                    \
    int fd = call;                                                                             \
    int saved = errno;                                                                         \
    opened(dirfd, path, flags, fresh, fd);                                                     \
    errno = saved;                                                                             \
    return fd;

int open(const char *path, int flags, ...) {
    int dirfd = AT_FDCWD;
    OPEN_BODY(real_open(path, flags, mode))
}
int open64(const char *path, int flags, ...) {
    int dirfd = AT_FDCWD;
    OPEN_BODY(real_open64(path, flags, mode))
}
int openat(int dirfd, const char *path, int flags, ...) {
    OPEN_BODY(real_openat(dirfd, path, flags, mode))
}
int openat64(int dirfd, const char *path, int flags, ...) {
    OPEN_BODY(real_openat64(dirfd, path, flags, mode))
}
int creat(const char *path, mode_t mode) {
    int fresh = access(path, F_OK) != 0;
    int fd = real_creat(path, mode), saved = errno;
    opened(AT_FDCWD, path, O_WRONLY, fresh, fd);
    errno = saved;
    return fd;
}
int creat64(const char *path, mode_t mode) {
    int fresh = access(path, F_OK) != 0;
    int fd = real_creat64(path, mode), saved = errno;
    opened(AT_FDCWD, path, O_WRONLY, fresh, fd);
    errno = saved;
    return fd;
}

/* Runs `call` (a data write of `len` bytes at `offset`) after recording its undo. */
#define LOGGED(fd, offset, len, call)                                                          \
    if (!tracked(fd))                                                                          \
        return call;                                                                           \
    pthread_mutex_lock(&lock);                                                                 \
    record(fd, (offset), (int64_t)(len));                                                      \
    ssize_t done = call;                                                                       \
    int saved = errno;                                                                         \
    maybe_die();                                                                               \
    pthread_mutex_unlock(&lock);                                                               \
    errno = saved;                                                                             \
    return done;

ssize_t write(int fd, const void *buf, size_t n) {
    LOGGED(fd, current_offset(fd), n, real_write(fd, buf, n))
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    LOGGED(fd, off, n, real_pwrite(fd, buf, n, off))
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off) {
    LOGGED(fd, off, n, real_pwrite64(fd, buf, n, off))
}
ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    LOGGED(fd, current_offset(fd), iov_len(iov, cnt), real_writev(fd, iov, cnt))
}
ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
    LOGGED(fd, off, iov_len(iov, cnt), real_pwritev(fd, iov, cnt, off))
}
ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off64_t off) {
    LOGGED(fd, off, iov_len(iov, cnt), real_pwritev64(fd, iov, cnt, off))
}

/* A truncation is undone like a write: its record holds the bytes it cuts off. */
static int truncated(int fd, int64_t len, int (*call)(int, off64_t)) {
    if (!tracked(fd))
        return call(fd, len);
    pthread_mutex_lock(&lock);
    struct stat st;
    int64_t size = fstat(fd, &st) == 0 ? st.st_size : 0;
    record(fd, len, size > len ? size - len : 0);
    int r = call(fd, len), saved = errno;
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
}
static int ftruncate_off(int fd, off64_t len) { return real_ftruncate(fd, (off_t)len); }
int ftruncate(int fd, off_t len) { return truncated(fd, len, ftruncate_off); }
int ftruncate64(int fd, off64_t len) { return truncated(fd, len, real_ftruncate64); }

/*
 * After a successful flush the file's writes so far are durable: forget their undo.
 * sync_file_range is not intercepted: it flushes no metadata and no disk cache, so it is no
 * durability point, and leaving its writes undoable is the right model.
 */
static int flushed(int fd, int r) {
    if (r == 0 && !ignore_fsync && fd >= 0 && fd < MAX_FDS && dir_fd[fd]) {
        pthread_mutex_lock(&lock);
        int c = real_open(created_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (c < 0)
            abort();
        real_close(c);
        pthread_mutex_unlock(&lock);
    }
    if (r == 0 && !ignore_fsync && tracked(fd)) {
        pthread_mutex_lock(&lock);
        if (undo_fd[fd] >= 0 && real_ftruncate(undo_fd[fd], 0) != 0)
            abort();
        pthread_mutex_unlock(&lock);
    }
    return r;
}
int fsync(int fd) {
    int r = real_fsync(fd), saved = errno;
    flushed(fd, r);
    errno = saved;
    return r;
}
int fdatasync(int fd) {
    int r = real_fdatasync(fd), saved = errno;
    flushed(fd, r);
    errno = saved;
    return r;
}

int close(int fd) {
    if (fd >= 0 && fd < MAX_FDS)
        dir_fd[fd] = 0;
    if (fd >= 0 && fd < MAX_FDS && undo_fd[fd] >= 0) {
        pthread_mutex_lock(&lock);
        if (undo_fd[fd] >= 0) {
            real_close(undo_fd[fd]);
            undo_fd[fd] = -1;
        }
        pthread_mutex_unlock(&lock);
    }
    return real_close(fd);
}
