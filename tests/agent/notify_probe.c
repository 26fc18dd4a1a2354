/* Issue syscalls under an audited filter whose listener goes to an agent, and report
 * what each call got, without anything executing.
 *
 *   notify_probe SOCKET FILTER CALLS METADATA ID TIMEOUT_S
 *
 * FILTER may return only ERRNO and USER_NOTIF (the caller neutralizes every other
 * return), so no call runs: it fails in seccomp with the filter's errno or with the
 * agent's. x86_64 numbers 335 and 336 (uretprobe, uprobe), which the kernel lets past
 * seccomp, are refused. The parent connects to SOCKET, clones a child that shares its
 * fd table (as crun does), the child loads the filter with NEW_LISTENER and from then on
 * makes no call of its own: it stores the listener fd and each result in shared memory
 * and spins. The parent sends the state JSON and the fd (the OCI listenerPath
 * protocol), closes its copy, and prints "nr result" per call; result is the errno, or
 * "ok VALUE" if a call returned without error (a bug: the agent answered success), then
 * the call's duration in ns, read from the vDSO clock (no syscall; 0 where the clock
 * would need one).
 * Every wait is bounded: exit 5 if the child does not finish within TIMEOUT_S.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RET_ACTION_FULL 0xffff0000U
#define RET_ERRNO 0x00050000U
#define RET_USER_NOTIF 0x7fc00000U
#define MAX_CALLS 2000000

struct call { uint64_t nr, args[6], flags; };
struct shared { volatile int fd, go, done; volatile long progress; long *ns; long results[]; };

static void die(int code, const char *fmt, const char *arg)
{
    fprintf(stderr, "notify_probe: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(code);
}

static void *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) die(2, "cannot open %s", path);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (n == cap) { cap *= 2; buf = realloc(buf, cap + 1); }
        size_t got = fread(buf + n, 1, cap - n, f);
        if (!got) break;
        n += got;
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 7) die(2, "%s", "usage: notify_probe SOCKET FILTER CALLS METADATA ID TIMEOUT_S");
    size_t flen, clen, mlen;
    struct sock_filter *insns = read_file(argv[2], &flen);
    struct call *calls = read_file(argv[3], &clen);
    char *metadata = read_file(argv[4], &mlen);
    double timeout = atof(argv[6]);
    if (!flen || flen % sizeof *insns || flen / sizeof *insns > 4096) die(2, "%s: not a filter", argv[2]);
    if (clen % sizeof *calls || clen / sizeof *calls > MAX_CALLS) die(2, "%s: not call records", argv[3]);
    size_t ninsns = flen / sizeof *insns, ncalls = clen / sizeof *calls;
    for (size_t i = 0; i < ninsns; i++) {
        if (BPF_CLASS(insns[i].code) != BPF_RET) continue;
        uint32_t action = insns[i].k & RET_ACTION_FULL;
        if (insns[i].code != (BPF_RET | BPF_K) || (action != RET_ERRNO && action != RET_USER_NOTIF))
            die(2, "%s: a return other than ERRNO or USER_NOTIF", argv[2]);
    }
    for (size_t i = 0; i < ncalls; i++) {
        uint64_t nr = calls[i].nr & ~0x40000000ULL;
        if (nr == 335 || nr == 336 || calls[i].flags) die(2, "%s: a refused call", argv[3]);
    }

    struct shared *sh = mmap(NULL, sizeof *sh + 2 * ncalls * sizeof(long), PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) die(1, "%s", "mmap failed");
    sh->ns = sh->results + ncalls;
    sh->fd = -1;

    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, argv[1], sizeof addr.sun_path - 1);
    if (connect(sock, (struct sockaddr *)&addr, sizeof addr) < 0) die(1, "cannot connect to %s", argv[1]);

    struct sock_fprog prog = {.len = ninsns, .filter = insns};
    long child = syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
    if (child < 0) die(1, "%s", "clone failed");
    if (child == 0) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) { sh->fd = -2; _exit(1); }
        long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
        /* From here on, no call of our own: everything is answered by the filter. */
        __atomic_store_n(&sh->fd, fd < 0 ? -3 : (int)fd, __ATOMIC_SEQ_CST);
        while (!__atomic_load_n(&sh->go, __ATOMIC_SEQ_CST)) ;
        for (size_t i = 0; i < ncalls; i++) {
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            long r = syscall(calls[i].nr, calls[i].args[0], calls[i].args[1], calls[i].args[2],
                             calls[i].args[3], calls[i].args[4], calls[i].args[5]);
            int err = errno;
            clock_gettime(CLOCK_MONOTONIC, &t1);
            sh->results[i] = r < 0 ? err : -1 - r;
            sh->ns[i] = (t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec);
            __atomic_store_n(&sh->progress, (long)i + 1, __ATOMIC_SEQ_CST);
        }
        __atomic_store_n(&sh->done, 1, __ATOMIC_SEQ_CST);
        for (;;) ;
    }

    double start = now();
    while (__atomic_load_n(&sh->fd, __ATOMIC_SEQ_CST) == -1) {
        if (now() - start > timeout) { kill(child, SIGKILL); die(5, "%s", "the child did not load the filter"); }
        usleep(100);
    }
    int fd = sh->fd;
    if (fd < 0) { kill(child, SIGKILL); die(3, "%s", "the child could not load the filter"); }

    size_t cap = mlen + 512;
    char *msg = malloc(cap);
    int len = snprintf(msg, cap, "{\"ociVersion\":\"1.0.2\",\"fds\":[\"seccompFd\"],\"pid\":%ld,"
                       "\"metadata\":\"%s\",\"state\":{\"ociVersion\":\"1.0.2\",\"id\":\"%s\","
                       "\"status\":\"creating\",\"pid\":%ld,\"bundle\":\"/\"}}",
                       child, metadata, argv[5], child);
    char control[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {.iov_base = msg, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                        .msg_controllen = sizeof control};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    if (sendmsg(sock, &mh, MSG_NOSIGNAL) != len) { kill(child, SIGKILL); die(1, "%s", "sendmsg failed"); }
    close(fd);  /* the table is shared: the child's copy goes too, the agent holds the only one */
    close(sock);
    fprintf(stderr, "child %ld\n", child);
    __atomic_store_n(&sh->go, 1, __ATOMIC_SEQ_CST);

    while (!__atomic_load_n(&sh->done, __ATOMIC_SEQ_CST)) {
        if (now() - start > timeout) {
            fprintf(stderr, "notify_probe: timed out after %ld of %zu calls\n", sh->progress, ncalls);
            kill(child, SIGKILL);
            waitpid(child, NULL, 0);
            return 5;
        }
        usleep(200);
    }
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    for (size_t i = 0; i < ncalls; i++) {
        if (sh->results[i] < 0) printf("%llu ok%ld %ld\n", (unsigned long long)calls[i].nr, -1 - sh->results[i], sh->ns[i]);
        else printf("%llu %ld %ld\n", (unsigned long long)calls[i].nr, sh->results[i], sh->ns[i]);
    }
    return 0;
}
