/* Start a thread and spawn a process the way glibc does it, and print the result.
 *
 * Output lines: "pthread_create E", "posix_spawn E" (E = 0 on success, else the
 * error number the call returned) and, when the spawn worked, "child_exit N".
 * With --child the program only exits 0: it is what posix_spawn runs.
 * glibc >= 2.34 (x86_64) makes both calls through clone3 first and falls back to
 * clone only on ENOSYS.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void *thread_main(void *arg) {
    return arg;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--child") == 0)
        return 0;

    pthread_t thread;
    int rc = pthread_create(&thread, NULL, thread_main, NULL);
    if (rc == 0)
        pthread_join(thread, NULL);
    printf("pthread_create %d\n", rc);

    pid_t pid;
    char *child_argv[] = {argv[0], "--child", NULL};
    rc = posix_spawn(&pid, argv[0], NULL, NULL, child_argv, environ);
    printf("posix_spawn %d\n", rc);
    if (rc == 0) {
        int status = 0;
        if (waitpid(pid, &status, 0) != pid)
            printf("child_exit waitpid-failed\n");
        else if (WIFEXITED(status))
            printf("child_exit %d\n", WEXITSTATUS(status));
        else
            printf("child_exit signal-%d\n", WTERMSIG(status));
    }
    fflush(stdout);
    return 0;
}
