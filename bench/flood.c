/* Job reports, one per connection, as fast as N processes can: the bench's load generator
 * (a C client so the clients, not zelador, are not what is measured).
 * usage: flood PORT SECONDS PROCESSES LINE  -> prints the number of "OK" replies */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5) return 64;
    int port = atoi(argv[1]), procs = atoi(argv[3]);
    double until = now() + atof(argv[2]);
    const char *line = argv[4];
    size_t len = strlen(line);
    int pipes[2];
    if (pipe(pipes)) return 1;
    for (int p = 0; p < procs; p++) {
        if (fork() == 0) {
            long ok = 0;
            struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
            addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            char buf[64];
            while (now() < until) {
                int fd = socket(AF_INET, SOCK_STREAM, 0);
                if (fd < 0) continue;
                if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
                    write(fd, line, len) == (ssize_t)len) {
                    ssize_t got = read(fd, buf, sizeof buf);
                    if (got >= 3 && memcmp(buf, "OK\n", 3) == 0) ok++;
                }
                close(fd);
            }
            if (write(pipes[1], &ok, sizeof ok) != sizeof ok) _exit(1);
            _exit(0);
        }
    }
    long total = 0, ok;
    for (int p = 0; p < procs; p++) {
        if (read(pipes[0], &ok, sizeof ok) == sizeof ok) total += ok;
        wait(NULL);
    }
    printf("%ld\n", total);
    return 0;
}
