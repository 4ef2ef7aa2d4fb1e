/*
 * forward_reference: the hand-written C UDP forwarder that udpd's forward is measured against, beside nginx.
 *
 * It does the work of udpd's forward on a wildcard IPv4 socket, with the fewest system calls we know how to make,
 * so that its CPU per request is the floor for any forwarder of this shape on the machine:
 *   - N threads, each with its own listening socket on the same port (SO_REUSEPORT) and its own epoll;
 *   - a session per (client address and port, local address asked): its own connected upstream socket, watched by
 *     the epoll of the thread that received the client's first datagram (SO_REUSEPORT keeps a client on one thread);
 *   - requests: recvmmsg in batches of 32 with IP_PKTINFO; each one sent upstream with send() on its session socket;
 *   - replies: every session socket that epoll reports is read with recvmmsg straight into one shared batch of
 *     outgoing messages, each with the client's address and an IP_PKTINFO naming the local address it asked; the
 *     batch goes to the clients with one sendmmsg on the listening socket when it is full and after each epoll pass.
 * What it leaves out, being a benchmark tool: idle timeouts and eviction (a full session table drops new clients),
 * limits, counters and IPv6.
 *
 * Usage: forward_reference [-t THREADS] [-b BATCH] -u UPSTREAM_PORT PORT
 *   The upstream is 127.0.0.1:UPSTREAM_PORT. PORT 0 picks a free port; the bound port is printed on stdout as
 *   "port N" once every thread is serving. SIGTERM or SIGINT ends it.
 *
 * Build: cc -O2 -pthread -o forward_reference forward_reference.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_BATCH 256
#define BUFFER_SIZE 65536
#define TABLE_SIZE 8192 /* sessions per thread; a power of two */
#define LISTENER_TOKEN UINT64_MAX

struct session {
    int fd; /* 0: the slot is free */
    struct sockaddr_in client;
    struct in_addr local;
};

struct worker {
    int listener;
    int epoll;
    int batch;
    struct sockaddr_in upstream;
    struct session *sessions;
    /* Requests: received in place, sent upstream one by one. */
    struct mmsghdr rx[MAX_BATCH];
    struct iovec rx_iov[MAX_BATCH];
    struct sockaddr_in peer[MAX_BATCH];
    char rx_control[MAX_BATCH][CMSG_SPACE(sizeof(struct in_pktinfo))];
    /* Replies: gathered from any number of sessions, sent to the clients together. */
    struct mmsghdr tx[MAX_BATCH];
    struct iovec tx_iov[MAX_BATCH];
    char tx_control[MAX_BATCH][CMSG_SPACE(sizeof(struct in_pktinfo))];
    int pending;
    char *rx_buffers;
    char *tx_buffers;
};

static void die(const char *what) {
    perror(what);
    exit(1);
}

static uint32_t session_hash(const struct sockaddr_in *client, struct in_addr local) {
    uint64_t key = ((uint64_t)client->sin_addr.s_addr << 16) ^ client->sin_port ^ ((uint64_t)local.s_addr << 29);
    key *= 0x9E3779B97F4A7C15ull;
    return (uint32_t)(key >> 40) & (TABLE_SIZE - 1);
}

/* The session of a client, opened on first use; NULL when the table is full or no socket could be opened. */
static struct session *find_session(struct worker *w, const struct sockaddr_in *client, struct in_addr local) {
    uint32_t index = session_hash(client, local);
    for (int probe = 0; probe < TABLE_SIZE; probe++, index = (index + 1) & (TABLE_SIZE - 1)) {
        struct session *s = &w->sessions[index];
        if (s->fd == 0) {
            int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
            if (fd < 0) return NULL;
            if (connect(fd, (struct sockaddr *)&w->upstream, sizeof w->upstream) < 0) {
                close(fd);
                return NULL;
            }
            *s = (struct session){.fd = fd, .client = *client, .local = local};
            struct epoll_event event = {.events = EPOLLIN, .data.u64 = index};
            if (epoll_ctl(w->epoll, EPOLL_CTL_ADD, fd, &event) < 0) die("epoll_ctl");
            return s;
        }
        if (s->client.sin_addr.s_addr == client->sin_addr.s_addr && s->client.sin_port == client->sin_port &&
            s->local.s_addr == local.s_addr) {
            return s;
        }
    }
    return NULL;
}

static void flush_replies(struct worker *w) {
    int next = 0;
    while (next < w->pending) {
        int sent = sendmmsg(w->listener, w->tx + next, (unsigned)(w->pending - next), 0);
        if (sent < 0) {
            if (errno == EINTR) continue;
            next++; /* a refused reply is skipped, as udpd counts and skips it */
            continue;
        }
        next += sent;
    }
    w->pending = 0;
}

static void forward_requests(struct worker *w) {
    for (;;) {
        for (int i = 0; i < w->batch; i++) {
            w->rx[i].msg_hdr = (struct msghdr){
                .msg_name = &w->peer[i],
                .msg_namelen = sizeof w->peer[i],
                .msg_iov = &w->rx_iov[i],
                .msg_iovlen = 1,
                .msg_control = w->rx_control[i],
                .msg_controllen = sizeof w->rx_control[i],
            };
        }
        int received = recvmmsg(w->listener, w->rx, (unsigned)w->batch, MSG_DONTWAIT, NULL);
        if (received <= 0) return;
        for (int i = 0; i < received; i++) {
            struct msghdr *in = &w->rx[i].msg_hdr;
            if ((in->msg_flags & MSG_TRUNC) || w->peer[i].sin_port == 0) continue;
            struct cmsghdr *c = CMSG_FIRSTHDR(in);
            if (!c || c->cmsg_level != IPPROTO_IP || c->cmsg_type != IP_PKTINFO) continue;
            struct in_pktinfo info;
            memcpy(&info, CMSG_DATA(c), sizeof info);
            struct session *s = find_session(w, &w->peer[i], info.ipi_addr);
            if (s) (void)send(s->fd, w->rx_iov[i].iov_base, w->rx[i].msg_len, MSG_DONTWAIT);
        }
        if (received < w->batch) return;
    }
}

/* Reads a session's replies into the outgoing batch, flushing it whenever it fills. */
static void gather_replies(struct worker *w, struct session *s) {
    for (;;) {
        if (w->pending == w->batch) flush_replies(w);
        int room = w->batch - w->pending;
        for (int i = w->pending; i < w->batch; i++) {
            w->tx_iov[i].iov_len = BUFFER_SIZE;
            w->tx[i].msg_hdr = (struct msghdr){.msg_iov = &w->tx_iov[i], .msg_iovlen = 1};
        }
        int received = recvmmsg(s->fd, w->tx + w->pending, (unsigned)room, MSG_DONTWAIT, NULL);
        if (received <= 0) return;
        for (int i = w->pending; i < w->pending + received; i++) {
            w->tx_iov[i].iov_len = w->tx[i].msg_len;
            struct msghdr *out = &w->tx[i].msg_hdr;
            out->msg_name = &s->client;
            out->msg_namelen = sizeof s->client;
            out->msg_control = w->tx_control[i];
            out->msg_controllen = CMSG_SPACE(sizeof(struct in_pktinfo));
            struct cmsghdr *c = CMSG_FIRSTHDR(out);
            c->cmsg_level = IPPROTO_IP;
            c->cmsg_type = IP_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
            struct in_pktinfo reply = {.ipi_ifindex = 0, .ipi_spec_dst = s->local};
            memcpy(CMSG_DATA(c), &reply, sizeof reply);
        }
        w->pending += received;
        if (received < room) return;
    }
}

static void *serve(void *argument) {
    struct worker *w = argument;
    struct epoll_event events[64];
    for (;;) {
        int ready = epoll_wait(w->epoll, events, 64, -1);
        if (ready < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < ready; i++) {
            if (events[i].data.u64 == LISTENER_TOKEN) {
                forward_requests(w);
            } else {
                gather_replies(w, &w->sessions[events[i].data.u64]);
            }
        }
        flush_replies(w);
    }
    return NULL;
}

static struct worker *new_worker(int port, int upstream_port, int batch) {
    struct worker *w = calloc(1, sizeof *w);
    if (!w) die("calloc");
    w->batch = batch;
    w->upstream = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)upstream_port)};
    w->upstream.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    w->sessions = calloc(TABLE_SIZE, sizeof *w->sessions);
    w->rx_buffers = malloc((size_t)batch * BUFFER_SIZE);
    w->tx_buffers = malloc((size_t)batch * BUFFER_SIZE);
    if (!w->sessions || !w->rx_buffers || !w->tx_buffers) die("malloc");
    for (int i = 0; i < batch; i++) {
        w->rx_iov[i] = (struct iovec){.iov_base = w->rx_buffers + (size_t)i * BUFFER_SIZE, .iov_len = BUFFER_SIZE};
        w->tx_iov[i] = (struct iovec){.iov_base = w->tx_buffers + (size_t)i * BUFFER_SIZE, .iov_len = BUFFER_SIZE};
    }
    w->listener = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (w->listener < 0) die("socket");
    int one = 1;
    if (setsockopt(w->listener, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) die("setsockopt SO_REUSEPORT");
    if (setsockopt(w->listener, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) < 0) die("setsockopt IP_PKTINFO");
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (bind(w->listener, (struct sockaddr *)&sin, sizeof sin) < 0) die("bind");
    w->epoll = epoll_create1(EPOLL_CLOEXEC);
    if (w->epoll < 0) die("epoll_create1");
    struct epoll_event event = {.events = EPOLLIN, .data.u64 = LISTENER_TOKEN};
    if (epoll_ctl(w->epoll, EPOLL_CTL_ADD, w->listener, &event) < 0) die("epoll_ctl");
    return w;
}

int main(int argc, char **argv) {
    int threads = 1, batch = 32, upstream_port = 0, option;
    while ((option = getopt(argc, argv, "t:b:u:")) != -1) {
        switch (option) {
        case 't': threads = atoi(optarg); break;
        case 'b': batch = atoi(optarg); break;
        case 'u': upstream_port = atoi(optarg); break;
        default: goto usage;
        }
    }
    if (optind != argc - 1 || threads < 1 || threads > 64 || batch < 1 || batch > MAX_BATCH || upstream_port <= 0) {
        goto usage;
    }
    int port = atoi(argv[optind]);
    struct worker **workers = calloc((size_t)threads, sizeof *workers);
    if (!workers) die("calloc");
    for (int i = 0; i < threads; i++) {
        workers[i] = new_worker(port, upstream_port, batch);
        if (port == 0) {
            struct sockaddr_in bound;
            socklen_t length = sizeof bound;
            if (getsockname(workers[i]->listener, (struct sockaddr *)&bound, &length) < 0) die("getsockname");
            port = ntohs(bound.sin_port);
        }
    }
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL); /* the threads inherit the mask; main waits for the signal */
    for (int i = 0; i < threads; i++) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, serve, workers[i]) != 0) die("pthread_create");
    }
    printf("port %d\n", port);
    fflush(stdout);
    int signal_number;
    sigwait(&stop, &signal_number);
    return 0;
usage:
    fprintf(stderr, "usage: %s [-t THREADS] [-b BATCH] -u UPSTREAM_PORT PORT\n", argv[0]);
    return 2;
}
