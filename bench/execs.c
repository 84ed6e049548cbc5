/* Execs elsewhere on the machine, at a steady rate: the bench's load for exec events.
 * usage: execs RATE SECONDS [PROGRAM]  -> fork+exec PROGRAM (default /bin/true) RATE times a
 * second for SECONDS, reaping as it goes; prints how many it ran. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 3) return 64;
    double rate = atof(argv[1]), seconds = atof(argv[2]);
    const char *program = argc > 3 ? argv[3] : "/bin/true";
    double start = now();
    long done = 0;
    for (;;) {
        double t = now() - start;
        if (t >= seconds) break;
        long due = (long)(t * rate);
        while (done < due) {
            pid_t pid = fork();
            if (pid == 0) {
                execl(program, program, (char *)0);
                _exit(127);
            }
            if (pid > 0) done++;
            while (waitpid(-1, NULL, WNOHANG) > 0) {}
        }
        struct timespec pause = {0, 200000};  /* 0.2 ms */
        nanosleep(&pause, NULL);
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
    }
    while (wait(NULL) > 0) {}
    printf("%ld\n", done);
    return 0;
}
