// CUDPD: what Swift cannot express of the socket API. Macros become functions, missing constants become
// extern consts, and every name carries the cudpd_ prefix. There is no logic here.
#ifndef CUDPD_H
#define CUDPD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <spawn.h>
#ifdef __linux__
#include <sys/epoll.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_addr.h>
#else
#include <net/route.h>
#endif

// MARK: - Control messages (CMSG_* are macros)

struct cmsghdr *_Nullable cudpd_cmsg_firsthdr(const struct msghdr *_Nonnull msg);
struct cmsghdr *_Nullable cudpd_cmsg_nxthdr(struct msghdr *_Nonnull msg, struct cmsghdr *_Nonnull cmsg);
unsigned char *_Nonnull cudpd_cmsg_data(struct cmsghdr *_Nonnull cmsg);
size_t cudpd_cmsg_space(size_t length);
size_t cudpd_cmsg_len(size_t length);

// MARK: - Batched I/O (recvmmsg/sendmmsg; -1 with ENOSYS where the platform has none)

struct cudpd_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};

int cudpd_recvmmsg(int fd, struct cudpd_mmsghdr *_Nonnull vector, unsigned int count, int flags);
int cudpd_sendmmsg(int fd, struct cudpd_mmsghdr *_Nonnull vector, unsigned int count, int flags);

// MARK: - GNU extensions Swift's Glibc module does not show

/// pthread_setname_np on Linux; does nothing elsewhere.
int cudpd_pthread_setname(const char *_Nonnull name);
/// pipe2(fds, O_CLOEXEC | O_NONBLOCK) on Linux; pipe() elsewhere (the caller sets the flags).
int cudpd_pipe_cloexec_nonblock(int *_Nonnull fds);
/// posix_spawn_file_actions_addclosefrom_np(actions, from) where the C library has it (glibc 2.34); elsewhere 0 and
/// nothing added (every descriptor udpd opens is close-on-exec anyway).
int cudpd_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *_Nonnull actions, int from);

// MARK: - posix_spawn flags (macros)

/// POSIX_SPAWN_SETPGROUP.
extern const short cudpd_spawn_setpgroup;
/// POSIX_SPAWN_SETSIGMASK.
extern const short cudpd_spawn_setsigmask;
/// POSIX_SPAWN_SETSIGDEF.
extern const short cudpd_spawn_setsigdef;

// MARK: - Privileges (prctl and capset are variadic or have no libc wrapper; 0 / ENOSYS elsewhere)

/// prctl(PR_SET_KEEPCAPS, on): keep the permitted capabilities of the calling thread across a change of uid.
int cudpd_prctl_keepcaps(int on);
/// capset() of the calling thread (Linux capability version 3, two 32-bit words per set).
int cudpd_capset(uint32_t effective0, uint32_t permitted0, uint32_t inheritable0);
/// capget() of the calling thread into three words (the first word of each set).
int cudpd_capget(uint32_t *_Nonnull effective0, uint32_t *_Nonnull permitted0, uint32_t *_Nonnull inheritable0);
/// CAP_NET_BIND_SERVICE's bit number (10 on Linux).
extern const int cudpd_cap_net_bind_service;
/// CAP_NET_RAW's bit number (13 on Linux): what setting IP_TRANSPARENT takes.
extern const int cudpd_cap_net_raw;
/// IP_TRANSPARENT and IPV6_TRANSPARENT (Linux; -1 elsewhere, which setsockopt refuses).
extern const int cudpd_ip_transparent;
extern const int cudpd_ipv6_transparent;
/// setresuid/setresgid, which glibc declares only under _GNU_SOURCE; glibc applies them to every thread.
int cudpd_setresuid(uid_t uid);
int cudpd_setresgid(gid_t gid);

// MARK: - Starting a program under a guard (guard.c: the one piece of C with control flow)

/// What a program is and whom it runs as; everything the fork's child needs, decided before the fork.
struct cudpd_program {
    const char *_Nonnull path;
    char *_Nullable const *_Nonnull argv;
    char *_Nullable const *_Nonnull envp;
    /// Non-zero: set the supplementary groups to `gid` alone, then gid and uid (real, effective, saved).
    int change_identity;
    uid_t uid;
    gid_t gid;
    /// /proc/sys/kernel/cap_last_cap: the bounding set is dropped for 0...last_capability.
    int last_capability;
    /// How long the program and everything it starts may run, in milliseconds.
    long timeout_ms;
};

/// One message of a guard on its control socket: `kind` 1 once the program started (`error` is the errno of the
/// step that failed, or 0; `process` is the guard's pid), `kind` 2 once its whole tree is gone (the program's wait
/// `status` when `exited`, `timed_out` when the program itself ran past its timeout, and how many processes the
/// guard `killed`). The spawner sends them for a guard it could not start (kind 1) or that died without its last
/// report (kind 2, with the processes it killed of the guard's tree).
struct cudpd_guard_report {
    int32_t kind;
    int32_t error;
    int32_t status;
    int32_t exited;
    int32_t timed_out;
    int32_t killed;
    int32_t process;
};

/// The fixed head of a message to the spawner. `kind` 1: start a program; the message goes on with `argc`
/// NUL-terminated arguments (the first is the program's absolute path) and `envc` NUL-terminated `NAME=value`
/// strings, and carries four descriptors (SCM_RIGHTS): the program's 0, 1 and 2 and the guard's end of its control
/// socket. `kind` 2: kill the guard `guard_process` (it ran past its timeout and its grace without reporting); its
/// tree is then killed and reported by the spawner.
struct cudpd_spawn_request {
    int32_t kind;
    int32_t guard_process;
    int32_t change_identity;
    uint32_t uid;
    uint32_t gid;
    int32_t last_capability;
    int32_t argc;
    int32_t envc;
    int64_t timeout_ms;
};

/// The largest message the spawner takes (head and strings); a larger one is refused with E2BIG.
extern const size_t cudpd_spawn_request_max;

/// Forks the program spawner: a small process, forked once while udpd is small, that forks a guard (see
/// `cudpd_guard_run` in guard.c) for every request on its socket, so that starting a program never copies udpd's
/// page tables or descriptor table. It is a child subreaper in a process group of its own, keeps of the calling
/// thread's capabilities only `cudpd_program_spawn_capabilities` (its bounding set too), holds no descriptor of
/// udpd's but its socket, and dies with the calling thread (PR_SET_PDEATHSIG) or at end of file on its socket.
/// When a guard dies without its last report, the spawner kills what is left of its tree and reports that instead.
///
/// Returns its pid, with `*socket` (udpd's end: SOCK_SEQPACKET, close-on-exec, non-blocking) set; or -1 and errno.
/// Call it from a thread that lives as long as udpd.
pid_t cudpd_spawner_start(int last_capability, int *_Nonnull socket);

/// Sends one request of `length` bytes with `count` (at most 4) descriptors to the spawner without blocking:
/// sendmsg's result (-1 with EAGAIN when its socket is full).
ssize_t cudpd_spawner_send(int socket, const void *_Nonnull message, size_t length, const int *_Nullable fds,
                           int count);
/// prctl(PR_SET_CHILD_SUBREAPER, 1): orphans of udpd's descendants reparent to udpd rather than to init.
int cudpd_become_subreaper(void);
/// CAP_KILL, CAP_SETGID, CAP_SETUID and CAP_SETPCAP: what the spawner keeps to start programs as their own user
/// (0 where there are no capabilities).
extern const uint32_t cudpd_program_spawn_capabilities;

// MARK: - Destination-address options (0 where the platform has no such option)

/// IP_PKTINFO (Linux, Solaris, NetBSD, macOS), else 0.
extern const int cudpd_ip_pktinfo;
/// IP_RECVDSTADDR (FreeBSD, OpenBSD, macOS), else 0.
extern const int cudpd_ip_recvdstaddr;
/// IP_SENDSRCADDR (FreeBSD, OpenBSD), else 0.
extern const int cudpd_ip_sendsrcaddr;
/// IPV6_RECVPKTINFO.
extern const int cudpd_ipv6_recvpktinfo;
/// IPV6_PKTINFO.
extern const int cudpd_ipv6_pktinfo;
/// IP_FREEBIND (Linux), else 0.
extern const int cudpd_ip_freebind;
/// IPV6_FREEBIND (Linux), else 0.
extern const int cudpd_ipv6_freebind;
/// SO_BINDTODEVICE (Linux), else 0.
extern const int cudpd_so_bindtodevice;
/// MSG_TRUNC.
extern const int cudpd_msg_trunc;
/// MSG_DONTWAIT.
extern const int cudpd_msg_dontwait;
/// SOCK_CLOEXEC, or 0 where socket() cannot take it.
extern const int cudpd_sock_cloexec;
/// accept4(fd, address, length, SOCK_CLOEXEC) (glibc declares accept4 only under _GNU_SOURCE): a blocking,
/// close-on-exec connected socket, or -1 and errno.
int cudpd_accept_cloexec(int fd, struct sockaddr *_Nullable address, socklen_t *_Nullable length);

/// The IPv4 packet-info struct, identical in layout to the platform's in_pktinfo where it exists.
struct cudpd_in_pktinfo {
    unsigned int ipi_ifindex;
    struct in_addr ipi_spec_dst;
    struct in_addr ipi_addr;
};

/// The IPv6 packet-info struct (RFC 3542), identical in layout to the platform's in6_pktinfo.
struct cudpd_in6_pktinfo {
    struct in6_addr ipi6_addr;
    unsigned int ipi6_ifindex;
};

// MARK: - Address notifications (rtnetlink on Linux, PF_ROUTE on the BSDs and macOS)

/// The protocol family of the address-notification socket: AF_NETLINK on Linux, PF_ROUTE elsewhere.
extern const int cudpd_address_socket_domain;
/// The socket protocol: NETLINK_ROUTE on Linux, 0 (every family) on PF_ROUTE.
extern const int cudpd_address_socket_protocol;
/// The multicast groups to join on Linux (RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR); 0 elsewhere.
extern const unsigned int cudpd_address_groups;
/// RTM_NEWADDR and RTM_DELADDR, as the message type of the platform's notifications.
extern const int cudpd_rtm_newaddr;
extern const int cudpd_rtm_deladdr;

#ifdef __linux__
/// The address netlink messages: a header, then struct ifaddrmsg, then attributes.
extern const int cudpd_nlmsg_done;
extern const int cudpd_nlmsg_error;
extern const int cudpd_nlmsg_overrun;
/// IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_FLAGS: attribute types of an address message.
extern const int cudpd_ifa_address;
extern const int cudpd_ifa_local;
extern const int cudpd_ifa_flags;
/// IFA_F_TENTATIVE: an IPv6 address still in duplicate address detection, which cannot be bound yet.
extern const unsigned int cudpd_ifa_f_tentative;

/// NLMSG_OK: whether `header` is a whole message within `length` bytes.
int cudpd_nlmsg_ok(const struct nlmsghdr *_Nonnull header, int length);
/// NLMSG_NEXT: the message after `header`; `length` is decreased by what was skipped.
struct nlmsghdr *_Nonnull cudpd_nlmsg_next(struct nlmsghdr *_Nonnull header, int *_Nonnull length);
/// NLMSG_DATA: the payload after the header.
void *_Nonnull cudpd_nlmsg_data(struct nlmsghdr *_Nonnull header);
/// IFA_RTA: the first attribute of an address message.
struct rtattr *_Nonnull cudpd_ifa_rta(struct ifaddrmsg *_Nonnull message);
/// IFA_PAYLOAD: the bytes of attributes in an address message.
int cudpd_ifa_payload(const struct nlmsghdr *_Nonnull header);
/// RTA_OK, RTA_NEXT, RTA_DATA, RTA_PAYLOAD.
int cudpd_rta_ok(const struct rtattr *_Nonnull attribute, int length);
struct rtattr *_Nonnull cudpd_rta_next(struct rtattr *_Nonnull attribute, int *_Nonnull length);
void *_Nonnull cudpd_rta_data(struct rtattr *_Nonnull attribute);
int cudpd_rta_payload(const struct rtattr *_Nonnull attribute);
#endif

#endif
