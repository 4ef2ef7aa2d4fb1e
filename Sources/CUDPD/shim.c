#include "CUDPD.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <unistd.h>
#include <netinet/in.h>

struct cmsghdr *cudpd_cmsg_firsthdr(const struct msghdr *msg) { return CMSG_FIRSTHDR(msg); }
struct cmsghdr *cudpd_cmsg_nxthdr(struct msghdr *msg, struct cmsghdr *cmsg) { return CMSG_NXTHDR(msg, cmsg); }
unsigned char *cudpd_cmsg_data(struct cmsghdr *cmsg) { return CMSG_DATA(cmsg); }
size_t cudpd_cmsg_space(size_t length) { return CMSG_SPACE(length); }
size_t cudpd_cmsg_len(size_t length) { return CMSG_LEN(length); }

#if defined(__linux__)
_Static_assert(sizeof(struct cudpd_mmsghdr) == sizeof(struct mmsghdr), "cudpd_mmsghdr must match mmsghdr");
_Static_assert(sizeof(struct cudpd_in_pktinfo) == sizeof(struct in_pktinfo), "cudpd_in_pktinfo must match");
int cudpd_recvmmsg(int fd, struct cudpd_mmsghdr *vector, unsigned int count, int flags) {
    return recvmmsg(fd, (struct mmsghdr *)vector, count, flags, NULL);
}
int cudpd_sendmmsg(int fd, struct cudpd_mmsghdr *vector, unsigned int count, int flags) {
    return sendmmsg(fd, (struct mmsghdr *)vector, count, flags);
}
#else
int cudpd_recvmmsg(int fd, struct cudpd_mmsghdr *vector, unsigned int count, int flags) {
    (void)fd; (void)vector; (void)count; (void)flags;
    errno = ENOSYS;
    return -1;
}
int cudpd_sendmmsg(int fd, struct cudpd_mmsghdr *vector, unsigned int count, int flags) {
    (void)fd; (void)vector; (void)count; (void)flags;
    errno = ENOSYS;
    return -1;
}
#endif

#ifdef IP_PKTINFO
const int cudpd_ip_pktinfo = IP_PKTINFO;
#else
const int cudpd_ip_pktinfo = 0;
#endif
#ifdef IP_RECVDSTADDR
const int cudpd_ip_recvdstaddr = IP_RECVDSTADDR;
#else
const int cudpd_ip_recvdstaddr = 0;
#endif
#ifdef IP_SENDSRCADDR
const int cudpd_ip_sendsrcaddr = IP_SENDSRCADDR;
#else
const int cudpd_ip_sendsrcaddr = 0;
#endif
const int cudpd_ipv6_recvpktinfo = IPV6_RECVPKTINFO;
const int cudpd_ipv6_pktinfo = IPV6_PKTINFO;
#ifdef IP_FREEBIND
const int cudpd_ip_freebind = IP_FREEBIND;
#else
const int cudpd_ip_freebind = 0;
#endif
#ifdef IPV6_FREEBIND
const int cudpd_ipv6_freebind = IPV6_FREEBIND;
#else
const int cudpd_ipv6_freebind = 0;
#endif
#ifdef SO_BINDTODEVICE
const int cudpd_so_bindtodevice = SO_BINDTODEVICE;
#else
const int cudpd_so_bindtodevice = 0;
#endif
const int cudpd_msg_trunc = MSG_TRUNC;
const int cudpd_msg_dontwait = MSG_DONTWAIT;
#ifdef SOCK_CLOEXEC
const int cudpd_sock_cloexec = SOCK_CLOEXEC;
#else
const int cudpd_sock_cloexec = 0;
#endif
_Static_assert(sizeof(struct cudpd_in6_pktinfo) == sizeof(struct in6_pktinfo), "cudpd_in6_pktinfo must match");

int cudpd_accept_cloexec(int fd, struct sockaddr *address, socklen_t *length) {
#if defined(__linux__)
    return accept4(fd, address, length, SOCK_CLOEXEC);
#else
    int accepted = accept(fd, address, length);
    if (accepted >= 0) fcntl(accepted, F_SETFD, FD_CLOEXEC);
    return accepted;
#endif
}

int cudpd_pthread_setname(const char *name) {
#if defined(__linux__)
    return pthread_setname_np(pthread_self(), name);
#elif defined(__APPLE__)
    return pthread_setname_np(name);
#else
    (void)name;
    return 0;
#endif
}

int cudpd_pipe_cloexec_nonblock(int *fds) {
#if defined(__linux__)
    return pipe2(fds, O_CLOEXEC | O_NONBLOCK);
#else
    return pipe(fds);
#endif
}

// MARK: - Privileges

#if defined(__linux__)
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/capability.h>

int cudpd_prctl_keepcaps(int on) { return prctl(PR_SET_KEEPCAPS, on, 0, 0, 0); }

int cudpd_capset(uint32_t effective0, uint32_t permitted0, uint32_t inheritable0) {
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {{effective0, permitted0, inheritable0}, {0, 0, 0}};
    return (int)syscall(SYS_capset, &header, data);
}

int cudpd_capget(uint32_t *effective0, uint32_t *permitted0, uint32_t *inheritable0) {
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    int result = (int)syscall(SYS_capget, &header, data);
    *effective0 = data[0].effective;
    *permitted0 = data[0].permitted;
    *inheritable0 = data[0].inheritable;
    return result;
}

const int cudpd_cap_net_bind_service = CAP_NET_BIND_SERVICE;
const int cudpd_cap_net_raw = CAP_NET_RAW;
const int cudpd_ip_transparent = IP_TRANSPARENT;
const int cudpd_ipv6_transparent = IPV6_TRANSPARENT;
_Static_assert(sizeof(struct __user_cap_data_struct) == 12, "three 32-bit words");
#else
int cudpd_prctl_keepcaps(int on) { (void)on; errno = ENOSYS; return -1; }
int cudpd_capset(uint32_t e, uint32_t p, uint32_t i) { (void)e; (void)p; (void)i; errno = ENOSYS; return -1; }
int cudpd_capget(uint32_t *e, uint32_t *p, uint32_t *i) { *e = 0; *p = 0; *i = 0; errno = ENOSYS; return -1; }
const int cudpd_cap_net_bind_service = 10;
const int cudpd_cap_net_raw = 13;
const int cudpd_ip_transparent = -1;
const int cudpd_ipv6_transparent = -1;
#endif

int cudpd_setresuid(uid_t uid) {
#if defined(__linux__)
    return setresuid(uid, uid, uid);
#else
    return setuid(uid);
#endif
}

int cudpd_setresgid(gid_t gid) {
#if defined(__linux__)
    return setresgid(gid, gid, gid);
#else
    return setgid(gid);
#endif
}
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
int cudpd_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}
#else
int cudpd_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int from) {
    (void)actions; (void)from;
    return 0;
}
#endif

const short cudpd_spawn_setpgroup = POSIX_SPAWN_SETPGROUP;
const short cudpd_spawn_setsigmask = POSIX_SPAWN_SETSIGMASK;
const short cudpd_spawn_setsigdef = POSIX_SPAWN_SETSIGDEF;

#if defined(__linux__)
const int cudpd_address_socket_domain = AF_NETLINK;
const int cudpd_address_socket_protocol = NETLINK_ROUTE;
const unsigned int cudpd_address_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
const int cudpd_rtm_newaddr = RTM_NEWADDR;
const int cudpd_rtm_deladdr = RTM_DELADDR;
const int cudpd_nlmsg_done = NLMSG_DONE;
const int cudpd_nlmsg_error = NLMSG_ERROR;
const int cudpd_nlmsg_overrun = NLMSG_OVERRUN;
const int cudpd_ifa_address = IFA_ADDRESS;
const int cudpd_ifa_local = IFA_LOCAL;
const int cudpd_ifa_flags = IFA_FLAGS;
const unsigned int cudpd_ifa_f_tentative = IFA_F_TENTATIVE;
_Static_assert(sizeof(struct nlmsghdr) == 16, "Swift reads struct nlmsghdr as 16 bytes");
_Static_assert(sizeof(struct ifaddrmsg) == 8, "Swift reads struct ifaddrmsg as 8 bytes");
_Static_assert(sizeof(struct rtattr) == 4, "Swift reads struct rtattr as 4 bytes");

int cudpd_nlmsg_ok(const struct nlmsghdr *header, int length) { return NLMSG_OK(header, length); }
struct nlmsghdr *cudpd_nlmsg_next(struct nlmsghdr *header, int *length) { return NLMSG_NEXT(header, *length); }
void *cudpd_nlmsg_data(struct nlmsghdr *header) { return NLMSG_DATA(header); }
struct rtattr *cudpd_ifa_rta(struct ifaddrmsg *message) { return IFA_RTA(message); }
int cudpd_ifa_payload(const struct nlmsghdr *header) { return IFA_PAYLOAD(header); }
int cudpd_rta_ok(const struct rtattr *attribute, int length) { return RTA_OK(attribute, length); }
struct rtattr *cudpd_rta_next(struct rtattr *attribute, int *length) { return RTA_NEXT(attribute, *length); }
void *cudpd_rta_data(struct rtattr *attribute) { return RTA_DATA(attribute); }
int cudpd_rta_payload(const struct rtattr *attribute) { return RTA_PAYLOAD(attribute); }
#else
const int cudpd_address_socket_domain = PF_ROUTE;
const int cudpd_address_socket_protocol = 0;
const unsigned int cudpd_address_groups = 0;
const int cudpd_rtm_newaddr = RTM_NEWADDR;
const int cudpd_rtm_deladdr = RTM_DELADDR;
#endif
