// The program spawner: one small process, forked from udpd once while udpd is small, that forks a guard for every
// program. A fork copies the parent's page tables and descriptor table, and the guard then closes every descriptor
// it inherited: forked from udpd itself, both grew with udpd's connections (5,000 idle ones made each exec
// connection about a millisecond slower). Forked from the spawner, which holds two descriptors and never
// allocates, a guard costs the same however busy udpd is.
//
// The spawner is a forked child of a multi-threaded process that never execs: like the guard, it calls only
// async-signal-safe functions, for its whole life (no malloc, no stdio, no locks). Its buffers are static.
#include "CUDPD.h"
#include "process_tree.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#if defined(__linux__)
#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <linux/capability.h>

#ifndef PR_SET_CHILD_SUBREAPER
#define PR_SET_CHILD_SUBREAPER 36
#endif

/// 64 KiB: far above any command line and environment a configuration gives (the kernel's own limit on one
/// argument is 128 KiB), below the socket's default buffer.
#define SPAWN_REQUEST_MAX 65536
/// The most strings (arguments and environment) of one request.
#define SPAWN_STRINGS_MAX 4096
/// The most guards running at once (each program has one; max-instances bounds them per service).
#define SPAWNER_MAX_GUARDS 4096

const size_t cudpd_spawn_request_max = SPAWN_REQUEST_MAX;

/// A guard the spawner started and has not reaped, and the spawner's copy of the guard's end of its control
/// socket: should the guard die without its last report, the spawner reports in its place.
struct spawned_guard {
    pid_t pid;
    int control;
};

static struct spawned_guard guards[SPAWNER_MAX_GUARDS];
static int guard_count;
static pid_t guard_pids[SPAWNER_MAX_GUARDS];
static char request_buffer[SPAWN_REQUEST_MAX];
static char *strings[SPAWN_STRINGS_MAX + 2];

static int find_guard(pid_t pid) {
    for (int i = 0; i < guard_count; i++)
        if (guards[i].pid == pid) return i;
    return -1;
}

/// Freezes and kills every child of the spawner that is not a guard, with its descendants: the tree of a guard
/// that died, which reparented to the spawner (a subreaper). Returns how many processes it killed; the reaping
/// loop collects them.
static int kill_orphans(void) {
    for (int i = 0; i < guard_count; i++) guard_pids[i] = guards[i].pid;
    pid_t tree[CUDPD_MAX_TREE];
    int known = cudpd_freeze_children(getpid(), tree, 0, CUDPD_MAX_TREE, guard_pids, guard_count);
    int killed = 0;
    for (int i = 0; i < known; i++)
        if (kill(tree[i], SIGKILL) == 0) killed++;
    return killed;
}

/// Reaps every child that exited: guards (forgotten, their control socket closed; one that did not exit normally
/// has its orphans killed and reported on its control socket) and the orphans killed above.
static void reap(void) {
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid < 0 && errno == EINTR) continue;
        if (pid <= 0) return;
        int index = find_guard(pid);
        if (index < 0) continue;
        int control = guards[index].control;
        guards[index] = guards[--guard_count];
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            // Killed before its last report: what it started is the spawner's now.
            int killed = kill_orphans();
            cudpd_guard_report_send(control, 2, 0, 0, 0, 0, killed, pid);
        }
        close(control);
    }
}

/// Points `strings` at the `count` NUL-terminated strings from `cursor`, ending before `end`, and a NULL after
/// them. Returns the position after the last one, or NULL when they do not fit.
static char *split_strings(char *cursor, const char *end, char **into, int count) {
    for (int i = 0; i < count; i++) {
        into[i] = cursor;
        while (cursor < end && *cursor) cursor++;
        if (cursor >= end) return NULL;
        cursor++;
    }
    into[count] = NULL;
    return cursor;
}

/// Takes one request from udpd. Returns 0 when none is waiting, 1 after one, and exits at end of file (udpd is
/// gone; every guard sees the same on its own control socket and kills its tree).
static int take_request(int sock, int last_capability) {
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(4 * sizeof(int))];
    } control_buffer;
    struct iovec vector = {request_buffer, sizeof request_buffer};
    struct msghdr message;
    memset(&message, 0, sizeof message);
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    message.msg_control = control_buffer.space;
    message.msg_controllen = sizeof control_buffer.space;
    ssize_t count = recvmsg(sock, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
    if (count <= 0) _exit(0);

    int fds[4] = {-1, -1, -1, -1};
    int received = 0;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        int carried = (int)((header->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *data = (int *)CMSG_DATA(header);
        for (int i = 0; i < carried; i++) {
            int fd;
            memcpy(&fd, data + i, sizeof fd);
            if (received < 4) fds[received++] = fd; else close(fd);
        }
    }
    struct cudpd_spawn_request head;
    int failed = 0;
    if ((size_t)count < sizeof head) {
        failed = EBADMSG;
    } else {
        memcpy(&head, request_buffer, sizeof head);
    }
    if (!failed && head.kind == 2) {
        if (find_guard(head.guard_process) >= 0) kill(head.guard_process, SIGKILL);
        for (int i = 0; i < received; i++) close(fds[i]);
        return 1;
    }
    // Descriptors the spawner had no room for are dropped by the kernel: a shortage, counted as one by udpd.
    if (!failed && (message.msg_flags & MSG_CTRUNC)) failed = EMFILE;
    if (!failed && (message.msg_flags & MSG_TRUNC)) failed = E2BIG;
    if (!failed && (head.kind != 1 || received != 4)) failed = EBADMSG;
    if (!failed && (head.argc < 1 || head.envc < 0 || head.argc + head.envc + 1 > SPAWN_STRINGS_MAX)) failed = E2BIG;
    char *end = request_buffer + count;
    if (!failed) {
        char *after = split_strings(request_buffer + sizeof head, end, strings, head.argc);
        if (!after || !split_strings(after, end, strings + head.argc + 1, head.envc)) failed = EBADMSG;
    }
    if (!failed && guard_count >= SPAWNER_MAX_GUARDS) failed = EAGAIN;
    if (!failed) {
        struct cudpd_program program = {
            strings[0], strings, strings + head.argc + 1, head.change_identity, (uid_t)head.uid, (gid_t)head.gid,
            last_capability < head.last_capability ? last_capability : head.last_capability, (long)head.timeout_ms,
        };
        pid_t guard = fork();
        if (guard == 0) cudpd_guard_run(&program, fds[0], fds[1], fds[2], fds[3]);
        if (guard < 0) {
            failed = errno;
        } else {
            guards[guard_count].pid = guard;
            guards[guard_count].control = fds[3];
            guard_count++;
            fds[3] = -1;  // the spawner's copy, kept for a report in the guard's place
        }
    }
    // The guard has its copies of the program's descriptors (or there is no guard): the spawner's go.
    if (failed && fds[3] >= 0) cudpd_guard_report_send(fds[3], 1, failed, 0, 0, 0, 0, 0);
    for (int i = 0; i < 4; i++)
        if (fds[i] >= 0) close(fds[i]);
    return 1;
}

/// Keeps of its capabilities only those that start programs as another user, in every set it may shrink.
static void keep_spawn_capabilities(int last_capability) {
    for (int capability = 0; capability <= last_capability; capability++) {
        if (capability < 32 && (cudpd_program_spawn_capabilities & (1U << capability))) continue;
        prctl(PR_CAPBSET_DROP, capability, 0, 0, 0);  // EPERM without CAP_SETPCAP: then it had nothing to keep
    }
    uint32_t effective = 0, permitted = 0, inheritable = 0;
    if (cudpd_capget(&effective, &permitted, &inheritable) != 0) permitted = 0;
    uint32_t kept = permitted & cudpd_program_spawn_capabilities;
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {{kept, kept, 0}, {0, 0, 0}};
    syscall(SYS_capset, &header, data);
}

static void run_spawner(int sock, pid_t parent, int last_capability) {
    // Dies with the thread that started it; and if udpd died before this line, at once.
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent) _exit(0);
    prctl(PR_SET_NAME, "udpd-spawner", 0, 0, 0);
    struct sigaction reset;
    memset(&reset, 0, sizeof reset);
    reset.sa_handler = SIG_DFL;
    sigemptyset(&reset.sa_mask);
    for (int signal = 1; signal < NSIG; signal++) sigaction(signal, &reset, NULL);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_SETMASK, &mask, NULL);
    setpgid(0, 0);  // a signal to udpd's process group (a terminal's ^C) is udpd's to handle, not the spawner's
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    keep_spawn_capabilities(last_capability);

    // Descriptors: /dev/null as 0..2 (none of udpd's standard streams stays open here), the socket as 3.
    if (sock < 4) {
        int moved = fcntl(sock, F_DUPFD_CLOEXEC, 4);
        if (moved < 0) _exit(1);
        sock = moved;
    }
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int fd = 0; fd < 3; fd++) {
        if (null >= 0 && null != fd) dup2(null, fd);
    }
    if (dup2(sock, 3) < 0) _exit(1);
    sock = 3;
    fcntl(sock, F_SETFD, FD_CLOEXEC);
    cudpd_close_from(4);
    int children = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

    for (;;) {
        struct pollfd events[2] = {{sock, POLLIN, 0}, {children, POLLIN, 0}};
        if (poll(events, children >= 0 ? 2 : 1, children >= 0 ? -1 : 100) < 0) continue;
        if (children >= 0 && events[1].revents) {
            struct signalfd_siginfo info[8];
            while (read(children, info, sizeof info) > 0) {}
        }
        reap();
        if (events[0].revents) {
            for (int taken = 0; taken < 64 && take_request(sock, last_capability); taken++) {}
        }
    }
}

pid_t cudpd_spawner_start(int last_capability, int *socket_out) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(pair[0]);
        run_spawner(pair[1], parent, last_capability);
        _exit(0);
    }
    int saved = errno;
    close(pair[1]);
    if (pid < 0) {
        close(pair[0]);
        errno = saved;
        return -1;
    }
    fcntl(pair[0], F_SETFL, fcntl(pair[0], F_GETFL) | O_NONBLOCK);
    *socket_out = pair[0];
    return pid;
}

ssize_t cudpd_spawner_send(int sock, const void *message, size_t length, const int *fds, int count) {
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(4 * sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct iovec vector = {(void *)message, length};
    struct msghdr header;
    memset(&header, 0, sizeof header);
    header.msg_iov = &vector;
    header.msg_iovlen = 1;
    if (fds && count > 0) {
        if (count > 4) count = 4;
        header.msg_control = control.space;
        header.msg_controllen = CMSG_SPACE((size_t)count * sizeof(int));
        struct cmsghdr *rights = CMSG_FIRSTHDR(&header);
        rights->cmsg_level = SOL_SOCKET;
        rights->cmsg_type = SCM_RIGHTS;
        rights->cmsg_len = CMSG_LEN((size_t)count * sizeof(int));
        memcpy(CMSG_DATA(rights), fds, (size_t)count * sizeof(int));
    }
    return sendmsg(sock, &header, MSG_DONTWAIT | MSG_NOSIGNAL);
}
#else
const size_t cudpd_spawn_request_max = 0;
pid_t cudpd_spawner_start(int last_capability, int *socket_out) {
    (void)last_capability; (void)socket_out;
    errno = ENOSYS;
    return -1;
}
ssize_t cudpd_spawner_send(int sock, const void *message, size_t length, const int *fds, int count) {
    (void)sock; (void)message; (void)length; (void)fds; (void)count;
    errno = ENOSYS;
    return -1;
}
#endif
