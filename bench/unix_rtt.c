/* The floor for one sequential call over a Unix socket: a 32-byte
 * ping-pong between two processes on an AF_UNIX stream socket pair,
 * blocking, no framework at all. The Unix twin of
 * shared/anchors/loopback_rtt.c (same sizes, same output format).
 * Build and run: cc -O2 unix_rtt.c -o /tmp/unix_rtt && /tmp/unix_rtt [N]
 * Prints one JSON object like the other anchors. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 50000, sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) {
        perror("socketpair");
        return 1;
    }
    if (fork() == 0) {
        char b[64];
        close(sv[0]);
        while (read(sv[1], b, sizeof b) > 0) write(sv[1], b, 32);
        _exit(0);
    }
    close(sv[1]);
    int c = sv[0];
    char b[64] = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n; i++) {
        write(c, b, 32);
        read(c, b, sizeof b);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s_el = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("{\"system\": \"unix-loopback\", \"workload\": \"round_trip\", \"ops\": %d, "
           "\"seconds\": %.4f, \"ops_per_s\": %.1f, \"us_per_op\": %.2f}\n",
           n, s_el, n / s_el, s_el / n * 1e6);
    close(c);
    wait(0);
    return 0;
}
