// The guard that watches a program, and what runs between its fork and the program's exec (spawner.c forks the
// guards; together they are the only pieces of CUDPD with control flow).
//
// A child forked from a multi-threaded process may call only async-signal-safe functions until it execs (another
// thread may have held malloc's lock, or the Swift runtime's, at the fork). Swift cannot promise that, so, as
// swift-nio and Foundation do for their own post-fork setup, this part is C that calls system calls only: no
// malloc, no stdio, no locks. The guard never execs, so it stays within the same rules for its whole (short) life.
// Everything that can be decided before the fork (paths, identities, limits) is decided in Swift
// (ChildSpawn.swift, ProcessRunner.swift) and passed in, through the spawner's socket.
#include "CUDPD.h"
#include "process_tree.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#if defined(__linux__)
#include <grp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <linux/capability.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef PR_SET_NO_NEW_PRIVS
#define PR_SET_NO_NEW_PRIVS 38
#endif
#ifndef PR_SET_CHILD_SUBREAPER
#define PR_SET_CHILD_SUBREAPER 36
#endif

const uint32_t cudpd_program_spawn_capabilities =
    (1U << CAP_KILL) | (1U << CAP_SETGID) | (1U << CAP_SETUID) | (1U << CAP_SETPCAP);

int cudpd_become_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

int cudpd_set_capabilities(uint32_t effective, uint32_t permitted) {
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {{effective, permitted, 0}, {0, 0, 0}};
    return (int)syscall(SYS_capset, &header, data);
}

static long monotonic_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/// Writes "/proc/<pid>/task/<pid>/children" into `path` (snprintf is not async-signal-safe).
static void children_path(char *path, pid_t pid) {
    char digits[16];
    int count = 0;
    unsigned value = (unsigned)pid;
    do {
        digits[count++] = (char)('0' + value % 10);
        value /= 10;
    } while (value > 0);
    char *cursor = path;
    const char *prefix = "/proc/";
    while (*prefix) *cursor++ = *prefix++;
    for (int i = count - 1; i >= 0; i--) *cursor++ = digits[i];
    const char *middle = "/task/";
    while (*middle) *cursor++ = *middle++;
    for (int i = count - 1; i >= 0; i--) *cursor++ = digits[i];
    const char *suffix = "/children";
    while (*suffix) *cursor++ = *suffix++;
    *cursor = 0;
}

/// The children of `pid`'s main thread, at most `capacity` of them.
static int read_children(pid_t pid, pid_t *children, int capacity) {
    char path[64];
    children_path(path, pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buffer[4096];
    int found = 0;
    long value = -1;
    ssize_t count;
    while ((count = read(fd, buffer, sizeof buffer)) > 0 || (count < 0 && errno == EINTR)) {
        for (ssize_t i = 0; i < count; i++) {
            if (buffer[i] >= '0' && buffer[i] <= '9') {
                value = (value < 0 ? 0 : value * 10) + (buffer[i] - '0');
            } else if (value >= 0) {
                if (found < capacity) children[found++] = (pid_t)value;
                value = -1;
            }
        }
    }
    if (value >= 0 && found < capacity) children[found++] = (pid_t)value;
    close(fd);
    return found;
}

static int contains(const pid_t *list, int count, pid_t pid) {
    for (int i = 0; i < count; i++)
        if (list[i] == pid) return 1;
    return 0;
}

int cudpd_freeze_children(pid_t parent, pid_t *tree, int known, int capacity, const pid_t *skip, int skipped) {
    pid_t work[256];
    for (int pass = 0; pass < 64; pass++) {
        int added = 0;
        int pending = read_children(parent, work, 256);
        while (pending > 0) {
            pid_t pid = work[--pending];
            if (contains(tree, known, pid) || contains(skip, skipped, pid)) continue;
            kill(pid, SIGSTOP);
            if (known < capacity) tree[known++] = pid;
            added++;
            pending += read_children(pid, work + pending, 256 - pending);
        }
        if (added == 0) break;
    }
    return known;
}

/// Stops every process of the guard's tree (a stopped process cannot fork), then kills them all, then reaps until
/// the guard has no child left, killing whatever still reparents to it. Returns how many processes it killed.
static int kill_tree(pid_t program, int *status, int *exited) {
    pid_t tree[CUDPD_MAX_TREE];
    pid_t work[256];
    int known = cudpd_freeze_children(getpid(), tree, 0, CUDPD_MAX_TREE, NULL, 0);
    int killed = 0;
    for (int i = 0; i < known; i++) {
        if (kill(tree[i], SIGKILL) == 0) killed++;
    }
    for (;;) {
        int wait_status;
        pid_t pid = waitpid(-1, &wait_status, WNOHANG);
        if (pid < 0 && errno == EINTR) continue;
        if (pid < 0) break;  // ECHILD: the tree is gone
        if (pid > 0) {
            if (pid == program && !*exited) {
                *status = wait_status;
                *exited = 1;
            }
            continue;
        }
        // Still some children: orphans that reparented since the freeze; kill them too, then wait for one.
        int count = read_children(getpid(), work, 256);
        for (int i = 0; i < count; i++) {
            if (contains(tree, known, work[i])) continue;
            if (kill(work[i], SIGKILL) == 0) killed++;
            if (known < CUDPD_MAX_TREE) tree[known++] = work[i];
        }
        pid = waitpid(-1, &wait_status, 0);
        if (pid == program && !*exited) {
            *status = wait_status;
            *exited = 1;
        }
    }
    return killed;
}

void cudpd_guard_report_send(int control, int32_t kind, int32_t error, int32_t status, int32_t exited,
                             int32_t timed_out, int32_t killed, pid_t guard) {
    struct cudpd_guard_report message = {kind, error, status, exited, timed_out, killed, (int32_t)guard};
    ssize_t ignored = send(control, &message, sizeof message, MSG_NOSIGNAL);
    (void)ignored;
}

/// Closes every descriptor from `first` up (close_range where the kernel has it, else one by one).
void cudpd_close_from(int first) {
#if defined(SYS_close_range)
    if (syscall(SYS_close_range, (unsigned)first, ~0U, 0U) == 0) return;
#endif
    struct rlimit limit;
    long last = getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY ? (long)limit.rlim_cur : 65536;
    for (long fd = first; fd < last; fd++) close((int)fd);
}

/// The program's own process, between the guard's fork and execve. Exits with 127 after reporting a failed step.
static void become_program(const struct cudpd_program *program, int error_pipe) {
    int failed = 0;
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0) failed = errno;
    if (!failed && setpgid(0, 0) != 0) failed = errno;
    // Ambient first (no privilege needed), then the bounding set while CAP_SETPCAP may still be held (EPERM
    // without it: an unprivileged udpd cannot shrink it, and no_new_privs below makes it moot).
    if (!failed && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) failed = errno;
    for (int capability = 0; !failed && capability <= program->last_capability; capability++) {
        if (prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0 && errno != EPERM && errno != EINVAL) failed = errno;
    }
    if (!failed && program->change_identity) {
        gid_t groups[1] = {program->gid};
        if (syscall(SYS_setgroups, 1, groups) != 0) failed = errno;
        if (!failed && syscall(SYS_setresgid, program->gid, program->gid, program->gid) != 0) failed = errno;
        if (!failed && syscall(SYS_setresuid, program->uid, program->uid, program->uid) != 0) failed = errno;
    }
    if (!failed && cudpd_set_capabilities(0, 0) != 0) failed = errno;
    if (!failed && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) failed = errno;
    // Last: a change of credentials clears the parent-death signal.
    if (!failed && prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) failed = errno;
    if (!failed) {
        execve(program->path, program->argv, program->envp);
        failed = errno;
    }
    ssize_t ignored = write(error_pipe, &failed, sizeof failed);
    (void)ignored;
    _exit(127);
}

/// The guard: a child subreaper that starts the program, reaps its whole tree, kills it at the deadline, when udpd
/// asks (a byte on `control`) or when udpd is gone (end of file on `control`), and reports once on `control`.
void cudpd_guard_run(const struct cudpd_program *program, int fd0, int fd1, int fd2, int control) {
    int failed = 0;
    struct sigaction reset;
    memset(&reset, 0, sizeof reset);
    reset.sa_handler = SIG_DFL;
    sigemptyset(&reset.sa_mask);
    for (int signal = 1; signal < NSIG; signal++) sigaction(signal, &reset, NULL);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_SETMASK, &mask, NULL);
    setpgid(0, 0);  // out of udpd's process group: a signal to the group must not kill the guard before its tree
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) failed = errno;

    // Descriptors: the program's three become 0..2 (moved out of the way first, so a source that is itself 0..2
    // is not overwritten), the control socket becomes 3, everything else of udpd's is closed.
    int sources[4] = {fd0, fd1, fd2, control};
    for (int i = 0; i < 4 && !failed; i++) {
        if (sources[i] < 4) {
            int moved = fcntl(sources[i], F_DUPFD_CLOEXEC, 4);
            if (moved < 0) failed = errno; else sources[i] = moved;
        }
    }
    for (int i = 0; i < 4 && !failed; i++) {
        if (dup2(sources[i], i) < 0) failed = errno;
    }
    control = 3;
    if (!failed) {
        fcntl(control, F_SETFD, FD_CLOEXEC);
        cudpd_close_from(4);
    }
    int error_pipe[2] = {-1, -1};
    if (!failed && pipe2(error_pipe, O_CLOEXEC) != 0) failed = errno;
    int children = failed ? -1 : signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (!failed && children < 0) failed = errno;
    pid_t pid = -1;
    if (!failed) {
        // vfork: no copy of the guard's address space for a child that only makes system calls and then execs or
        // _exits (as glibc's posix_spawn does); its credential, capability and signal-mask changes are its own,
        // and the guard resumes once the program has started or failed.
        pid = vfork();
        if (pid < 0) failed = errno;
        if (pid == 0) become_program(program, error_pipe[1]);
    }
    if (pid > 0) {
        close(error_pipe[1]);
        ssize_t count;
        do {
            count = read(error_pipe[0], &failed, sizeof failed);
        } while (count < 0 && errno == EINTR);
        if (count != (ssize_t)sizeof failed) failed = 0;
        if (failed) {
            int ignored;
            while (waitpid(pid, &ignored, 0) < 0 && errno == EINTR) {}
        }
    }
    cudpd_guard_report_send(control, 1, failed, 0, 0, 0, 0, getpid());
    if (failed) _exit(0);
    close(0);
    close(1);
    close(2);
    // The guard needs only CAP_KILL from here on (to stop and kill a tree running as another user); a guard that
    // does not hold it (an unprivileged udpd's) keeps nothing.
    if (cudpd_set_capabilities(1U << CAP_KILL, 1U << CAP_KILL) != 0) cudpd_set_capabilities(0, 0);

    int status = 0, exited = 0, timed_out = 0, killed = 0;
    long deadline = monotonic_ms() + program->timeout_ms;
    for (;;) {
        int wait_status;
        pid_t reaped;
        while ((reaped = waitpid(-1, &wait_status, WNOHANG)) > 0) {
            if (reaped == pid) {
                status = wait_status;
                exited = 1;
            }
        }
        if (reaped < 0 && errno == ECHILD) break;  // the program and everything it started are gone
        long remaining = deadline - monotonic_ms();
        if (remaining <= 0) {
            timed_out = !exited;
            killed = kill_tree(pid, &status, &exited);
            break;
        }
        struct pollfd events[2] = {{control, POLLIN, 0}, {children, POLLIN, 0}};
        int ready = poll(events, 2, remaining > 1000000 ? 1000000 : (int)remaining);
        if (ready < 0) continue;
        if (events[0].revents) {
            // A request to stop now (shutdown), or udpd is gone (end of file): either way the tree goes.
            killed = kill_tree(pid, &status, &exited);
            break;
        }
        if (events[1].revents) {
            struct signalfd_siginfo info[8];
            while (read(children, info, sizeof info) > 0) {}
        }
    }
    cudpd_guard_report_send(control, 2, 0, status, exited, timed_out, killed, getpid());
    _exit(0);
}

#else
const uint32_t cudpd_program_spawn_capabilities = 0;
int cudpd_become_subreaper(void) { errno = ENOSYS; return -1; }
#endif
