/* greet: the sample service Airlock's demo builds, tests, signs and runs. */
#include <stdio.h>
#include <string.h>

#define VERSION "1.0.0"

static void greet(const char *name) {
    printf("Hello, %s!\n", (name && *name) ? name : "world");
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("greet %s\n", VERSION);
        return 0;
    }
    greet(argc > 1 ? argv[1] : NULL);
    return 0;
}
