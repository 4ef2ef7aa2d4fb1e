/*
 * echo_reference: the hand-written C UDP echo server that udpd's echo is measured against.
 *
 * It does the same work as udpd's echo on a wildcard socket, and nothing more:
 *   - N threads, each with its own socket on the same port (SO_REUSEPORT), so the kernel spreads clients;
 *   - recvmmsg/sendmmsg in batches of 32;
 *   - IP_PKTINFO / IPV6_RECVPKTINFO on every datagram, and each reply sent with the request's destination address
 *     as its source (IP_PKTINFO / IPV6_PKTINFO ancillary data), so that connected clients accept it;
 *   - no reply to source port 0 (the cheapest half of udpd's reflection guard).
 *
 * Usage: echo_reference [-4|-6] [-a ADDRESS] [-t THREADS] [-b BATCH] PORT
 *   PORT 0 picks a free port. The bound port is printed on stdout as "port N" once every thread is serving.
 *   SIGTERM or SIGINT ends it.
 *
 * Build: cc -O2 -pthread -o echo_reference echo_reference.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_BATCH 256
#define BUFFER_SIZE 65536

struct worker {
    int fd;
    int family;
    int batch;
};

static void die(const char *what) {
    perror(what);
    exit(1);
}

static int open_socket(int family, const char *address, int port) {
    int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) die("setsockopt SO_REUSEPORT");
    if (family == AF_INET) {
        if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) < 0) die("setsockopt IP_PKTINFO");
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        if (inet_pton(AF_INET, address, &sin.sin_addr) != 1) die("inet_pton");
        if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0) die("bind");
    } else {
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) die("setsockopt IPV6_V6ONLY");
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one) < 0) die("setsockopt IPV6_RECVPKTINFO");
        struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
        if (inet_pton(AF_INET6, address, &sin6.sin6_addr) != 1) die("inet_pton");
        if (bind(fd, (struct sockaddr *)&sin6, sizeof sin6) < 0) die("bind");
    }
    return fd;
}

static int bound_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t length = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &length) < 0) die("getsockname");
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* Everything one thread needs, allocated once: nothing is allocated per datagram. */
struct batch_state {
    struct mmsghdr rx[MAX_BATCH];
    struct mmsghdr tx[MAX_BATCH];
    struct iovec rx_iov[MAX_BATCH];
    struct iovec tx_iov[MAX_BATCH];
    struct sockaddr_storage peer[MAX_BATCH];
    char rx_control[MAX_BATCH][CMSG_SPACE(sizeof(struct in6_pktinfo))];
    char tx_control[MAX_BATCH][CMSG_SPACE(sizeof(struct in6_pktinfo))];
    char *buffers;
};

static void *serve(void *argument) {
    struct worker *w = argument;
    struct batch_state *s = calloc(1, sizeof *s);
    if (!s) die("calloc");
    s->buffers = malloc((size_t)w->batch * BUFFER_SIZE);
    if (!s->buffers) die("malloc");
    for (int i = 0; i < w->batch; i++) {
        s->rx_iov[i] = (struct iovec){.iov_base = s->buffers + (size_t)i * BUFFER_SIZE, .iov_len = BUFFER_SIZE};
    }
    for (;;) {
        for (int i = 0; i < w->batch; i++) {
            s->rx[i].msg_hdr = (struct msghdr){
                .msg_name = &s->peer[i],
                .msg_namelen = sizeof s->peer[i],
                .msg_iov = &s->rx_iov[i],
                .msg_iovlen = 1,
                .msg_control = s->rx_control[i],
                .msg_controllen = sizeof s->rx_control[i],
            };
        }
        /* Block for the first datagram, then take whatever else is queued (MSG_WAITFORONE). */
        int received = recvmmsg(w->fd, s->rx, (unsigned)w->batch, MSG_WAITFORONE, NULL);
        if (received < 0) {
            if (errno == EINTR) continue;
            die("recvmmsg");
        }
        int replies = 0;
        for (int i = 0; i < received; i++) {
            struct msghdr *in = &s->rx[i].msg_hdr;
            if (in->msg_flags & MSG_TRUNC) continue;
            uint16_t peer_port = w->family == AF_INET ? ((struct sockaddr_in *)&s->peer[i])->sin_port
                                                      : ((struct sockaddr_in6 *)&s->peer[i])->sin6_port;
            if (peer_port == 0) continue;
            struct cmsghdr *found = NULL;
            for (struct cmsghdr *c = CMSG_FIRSTHDR(in); c; c = CMSG_NXTHDR(in, c)) {
                if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) ||
                    (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO)) {
                    found = c;
                    break;
                }
            }
            if (!found) continue;
            char *control = s->tx_control[replies];
            struct msghdr *out = &s->tx[replies].msg_hdr;
            s->tx_iov[replies] = (struct iovec){.iov_base = s->rx_iov[i].iov_base, .iov_len = s->rx[i].msg_len};
            *out = (struct msghdr){
                .msg_name = &s->peer[i],
                .msg_namelen = in->msg_namelen,
                .msg_iov = &s->tx_iov[replies],
                .msg_iovlen = 1,
                .msg_control = control,
            };
            if (found->cmsg_level == IPPROTO_IP) {
                struct in_pktinfo request;
                memcpy(&request, CMSG_DATA(found), sizeof request);
                struct in_pktinfo reply = {.ipi_ifindex = 0, .ipi_spec_dst = request.ipi_addr};
                out->msg_controllen = CMSG_SPACE(sizeof reply);
                struct cmsghdr *c = CMSG_FIRSTHDR(out);
                c->cmsg_level = IPPROTO_IP;
                c->cmsg_type = IP_PKTINFO;
                c->cmsg_len = CMSG_LEN(sizeof reply);
                memcpy(CMSG_DATA(c), &reply, sizeof reply);
            } else {
                struct in6_pktinfo request;
                memcpy(&request, CMSG_DATA(found), sizeof request);
                out->msg_controllen = CMSG_SPACE(sizeof request);
                struct cmsghdr *c = CMSG_FIRSTHDR(out);
                c->cmsg_level = IPPROTO_IPV6;
                c->cmsg_type = IPV6_PKTINFO;
                c->cmsg_len = CMSG_LEN(sizeof request);
                memcpy(CMSG_DATA(c), &request, sizeof request);
            }
            replies++;
        }
        int next = 0;
        while (next < replies) {
            int sent = sendmmsg(w->fd, s->tx + next, (unsigned)(replies - next), 0);
            if (sent < 0) {
                if (errno == EINTR) continue;
                next++; /* a refused reply is skipped, as udpd counts and skips it */
                continue;
            }
            next += sent;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    int family = AF_INET, threads = 1, batch = 32, option;
    const char *address = NULL;
    while ((option = getopt(argc, argv, "46a:t:b:")) != -1) {
        switch (option) {
        case '4': family = AF_INET; break;
        case '6': family = AF_INET6; break;
        case 'a': address = optarg; break;
        case 't': threads = atoi(optarg); break;
        case 'b': batch = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: %s [-4|-6] [-a ADDRESS] [-t THREADS] [-b BATCH] PORT\n", argv[0]);
            return 2;
        }
    }
    if (optind != argc - 1 || threads < 1 || threads > 64 || batch < 1 || batch > MAX_BATCH) {
        fprintf(stderr, "usage: %s [-4|-6] [-a ADDRESS] [-t THREADS] [-b BATCH] PORT\n", argv[0]);
        return 2;
    }
    if (!address) address = family == AF_INET ? "0.0.0.0" : "::";
    int port = atoi(argv[optind]);

    /* Bind every socket before serving: the first one picks the port when 0 was asked for. */
    struct worker *workers = calloc((size_t)threads, sizeof *workers);
    if (!workers) die("calloc");
    for (int i = 0; i < threads; i++) {
        workers[i] = (struct worker){.fd = open_socket(family, address, port), .family = family, .batch = batch};
        if (port == 0) port = bound_port(workers[i].fd);
    }
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL); /* the threads inherit the mask; main waits for the signal */
    for (int i = 0; i < threads; i++) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, serve, &workers[i]) != 0) die("pthread_create");
    }
    printf("port %d\n", port);
    fflush(stdout);
    int signal_number;
    sigwait(&stop, &signal_number);
    return 0;
}
