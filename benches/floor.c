/*
 * floor.c: the floor reference for `ioscale serve` benchmarks.
 *
 * A minimal single-threaded epoll (level-triggered) HTTP server that parses nothing: every read
 * that returns bytes is answered with one fixed HTTP/1.1 keep-alive response carrying a 1-byte
 * body. It counts requests by reads, so it is only correct for clients that send one request and
 * wait for its answer (wrk, h2load without pipelining): what no real server can do cheaper.
 * Its syscalls per request are the minimum: epoll_wait (shared), read, write.
 *
 *   gcc -O2 -o /tmp/ioscale-floor benches/floor.c && /tmp/ioscale-floor 8081
 *
 * Usage: floor PORT   (listens on 127.0.0.1:PORT; SIGTERM/SIGINT end it)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\nServer: floor\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\nx";

int main(int argc, char **argv) {
    if (argc != 2 || atoi(argv[1]) <= 0 || atoi(argv[1]) > 65535) {
        fprintf(stderr, "usage: %s PORT (1-65535)\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4096)) {
        perror("floor: cannot listen");
        return 3;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event evs[512];
    char buf[16384];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("floor: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (c < 0) continue;
                struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev)) close(c);
                continue;
            }
            ssize_t r = read(fd, buf, sizeof buf);
            if (r > 0) {
                if (write(fd, RESPONSE, sizeof RESPONSE - 1) >= 0) continue;
            } else if (r < 0 && errno == EAGAIN) {
                continue;
            }
            close(fd); /* closing removes it from the epoll set */
        }
    }
}
