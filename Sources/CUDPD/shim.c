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
