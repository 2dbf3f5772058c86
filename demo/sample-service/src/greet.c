/* greet: the sample service Airlock's demo builds, tests, signs and runs. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define VERSION "1.0.0"

/* As PID 1 in a container, a signal without a handler is ignored: stop on SIGTERM. */
static void stop(int sig) {
    (void)sig;
    _exit(0);
}

static void greet(const char *name) {
    printf("Hello, %s!\n", (name && *name) ? name : "world");
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("greet %s\n", VERSION);
        return 0;
    }
    /* --serve NAME: greet once, then stay up as the demo's long-running service
     * (it needs no network: the reconciler runs it with --network=none). */
    if (argc > 1 && strcmp(argv[1], "--serve") == 0) {
        signal(SIGTERM, stop);
        greet(argc > 2 ? argv[2] : NULL);
        fflush(stdout);
        for (;;)
            pause();
    }
    greet(argc > 1 ? argv[1] : NULL);
    return 0;
}
