/* ptrace_self: a container process that must not notice `ocishim inspect`.
 *
 * Until the file GO exists (the test creates it once it is done), and for at most
 * SECONDS seconds, it loops: fork a child that asks to be traced (PTRACE_TRACEME)
 * and stops itself; check that the child stops as this process's tracee; kill and
 * reap it. It also watches its own TracerPid and counts the signals it receives
 * (SIGCONT, SIGTRAP, SIGSTOP-related ones) that nobody sent it. At the end it prints
 *   iterations=N failures=F traced_at_times=T final_tracer=0 signals=S
 * and exits 0 only when F and S are 0. While it runs, the test seizes, interrupts and
 * detaches it (ocishim inspect) from outside.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t signals_seen;

static void on_signal(int sig) { (void)sig; signals_seen++; }

static int tracer_pid(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int pid = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "TracerPid: %d", &pid) == 1) break;
    fclose(f);
    return pid;
}

static int traced_child_works(void) {
    pid_t pid = fork();
    int status;
    if (pid < 0) return 0;
    if (pid == 0) {
        if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0) _exit(3);
        raise(SIGSTOP);
        _exit(0);
    }
    while (waitpid(pid, &status, WUNTRACED) < 0)
        if (errno != EINTR) return 0;
    int ok = WIFSTOPPED(status) && WSTOPSIG(status) == SIGSTOP;
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return ok;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 6.0;
    const char *go = argc > 2 ? argv[2] : NULL;
    int sigs[] = {SIGCONT, SIGTRAP, SIGUSR1, SIGUSR2, SIGHUP, SIGTTIN, SIGTTOU};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);

    struct timespec start, now, pause = {0, 20 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    long iterations = 0, failures = 0, tracer_seen = 0;
    printf("started\n");
    fflush(stdout);
    do {
        if (!traced_child_works()) failures++;
        int t = tracer_pid();
        if (t != 0) tracer_seen++;  /* expected while inspect holds it; 0 once it is gone */
        iterations++;
        while (nanosleep(&pause, &pause) < 0 && errno == EINTR) {}
        pause.tv_nsec = 20 * 1000 * 1000;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (go && iterations >= 10 && access(go, F_OK) == 0) break;
    } while ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
    int final_tracer = tracer_pid();
    printf("iterations=%ld failures=%ld traced_at_times=%ld final_tracer=%d signals=%d\n",
           iterations, failures, tracer_seen, final_tracer, (int)signals_seen);
    return failures == 0 && signals_seen == 0 && final_tracer == 0 ? 0 : 1;
}
