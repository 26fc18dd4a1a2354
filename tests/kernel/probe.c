/*
 * probe: ask the kernel's seccomp what a filter answers, without running any syscall.
 *
 *   probe FILTER CALLS     run every call through FILTER in a forked child
 *   probe --check-ia32     exit 0 when `int $0x80` works (CONFIG_IA32_EMULATION)
 *
 * FILTER is a raw struct sock_filter array in host byte order. Every return in it
 * must be RET #ERRNO(k) (tests/kernel/harness.py rewrites the others to marker
 * errnos first); the probe checks this itself and refuses anything else, so the
 * filter it loads can only make syscalls fail before they do anything.
 *
 * CALLS is an array of records of 8 host-order u64: nr, args[6], flags.
 * flags bit 0: issue the call as i386 through `int $0x80` (seccomp_data.arch is then
 * AUDIT_ARCH_I386; nr and args are 32-bit). Otherwise the 64-bit `syscall`
 * instruction is used, x32 numbers (nr | 0x40000000) included.
 * Numbers 335 and 336 on the 64-bit entry (uretprobe, uprobe) are refused: the kernel
 * lets them through seccomp without running the filter.
 *
 * Output: one line per call, "nr errno", where errno is what the call failed with
 * (0 when ERRNO(0) made it return 0).
 *
 * Exit codes: 0 done, 2 bad input or refused call, 3 the kernel refused the filter,
 * 4 int $0x80 unavailable, 5 the child did not end as expected, 1 other failure.
 *
 * After the filter is loaded every syscall fails, so the child cannot write or exit:
 * it stores results in a MAP_SHARED area, sets "done", and dies of SIGILL from a
 * trap instruction, which needs no syscall. Between loading the filter and the trap
 * the child calls no libc function: syscalls are inline assembly.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#if !defined(__x86_64__)
#error "probe is x86_64 only"
#endif

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_INPUT = 2, EXIT_LOAD = 3, EXIT_IA32 = 4, EXIT_CHILD = 5 };

#define FLAG_I386 1u
#define X32_BIT 0x40000000u
#define MAX_INSNS 4096
#define MAX_CALLS (1u << 20)

struct call {
    uint64_t nr;
    uint64_t args[6];
    uint64_t flags;
};

enum { STATE_START = 0, STATE_LOADING, STATE_LOAD_FAILED, STATE_LOADED, STATE_DONE };

struct shared {
    uint32_t state;
    int32_t load_errno;
    uint64_t completed;
    int64_t results[];
};

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("probe: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

static void *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(EXIT_INPUT, "%s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        die(EXIT_FAIL, "out of memory");
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            if (!buf)
                die(EXIT_FAIL, "out of memory");
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f))
        die(EXIT_INPUT, "%s: read error", path);
    fclose(f);
    *len = n;
    return buf;
}

/* The only way a filter may answer: RET #k with k an ERRNO action. */
static void check_filter(const struct sock_filter *insns, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (BPF_CLASS(insns[i].code) != BPF_RET)
            continue;
        if (insns[i].code != (BPF_RET | BPF_K))
            die(EXIT_INPUT, "insn %zu: return of A or X refused: only RET #ERRNO(k) may be loaded", i);
        if ((insns[i].k & SECCOMP_RET_ACTION_FULL) != SECCOMP_RET_ERRNO)
            die(EXIT_INPUT, "insn %zu: RET #0x%08" PRIx32 " refused: only RET #ERRNO(k) may be loaded",
                i, (uint32_t)insns[i].k);
    }
}

static void check_call(const struct call *c, size_t i)
{
    if (c->flags & ~(uint64_t)FLAG_I386)
        die(EXIT_INPUT, "call %zu: unknown flags 0x%" PRIx64, i, c->flags);
    if (c->nr > UINT32_MAX)
        die(EXIT_INPUT, "call %zu: nr 0x%" PRIx64 " does not fit 32 bits", i, c->nr);
    if (c->flags & FLAG_I386) {
        for (int a = 0; a < 6; a++)
            if (c->args[a] > UINT32_MAX)
                die(EXIT_INPUT, "call %zu: i386 arg %d 0x%" PRIx64 " does not fit 32 bits",
                    i, a, c->args[a]);
        return;
    }
    /* The kernel takes the low 32 bits of rax as the number; x32 variants are refused
     * too, although seccomp does filter them, to keep the rule simple. */
    uint32_t base = (uint32_t)c->nr & ~X32_BIT;
    if (base == 335 || base == 336)
        die(EXIT_INPUT, "call %zu: nr %" PRIu64 " refused: x86_64 uretprobe/uprobe bypass seccomp",
            i, c->nr);
}

static inline __attribute__((always_inline)) int64_t raw_syscall64(const struct call *c)
{
    register uint64_t r10 __asm__("r10") = c->args[3];
    register uint64_t r8 __asm__("r8") = c->args[4];
    register uint64_t r9 __asm__("r9") = c->args[5];
    uint64_t rax = c->nr;
    __asm__ volatile("syscall"
                     : "+a"(rax)
                     : "D"(c->args[0]), "S"(c->args[1]), "d"(c->args[2]), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory", "cc");
    return (int64_t)rax;
}

/* i386 ABI from a 64-bit process: nr in eax, args in ebx ecx edx esi edi ebp.
 * rbp is saved around the call by hand; the stack pointer first steps over the red zone. */
static inline __attribute__((always_inline)) int64_t raw_int80(const struct call *c)
{
    uint64_t rax = (uint32_t)c->nr;
    uint64_t a5 = (uint32_t)c->args[5];
    __asm__ volatile("sub $128, %%rsp\n\t"
                     "push %%rbp\n\t"
                     "mov %[a5], %%rbp\n\t"
                     "int $0x80\n\t"
                     "pop %%rbp\n\t"
                     "add $128, %%rsp"
                     : "+a"(rax)
                     : "b"((uint64_t)(uint32_t)c->args[0]), "c"((uint64_t)(uint32_t)c->args[1]),
                       "d"((uint64_t)(uint32_t)c->args[2]), "S"((uint64_t)(uint32_t)c->args[3]),
                       "D"((uint64_t)(uint32_t)c->args[4]), [a5] "r"(a5)
                     : "r8", "r9", "r10", "r11", "memory", "cc");
    return (int32_t)(uint32_t)rax;
}

static int check_ia32(void)
{
    pid_t pid = fork();
    if (pid < 0)
        die(EXIT_FAIL, "fork: %s", strerror(errno));
    if (pid == 0) {
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        struct call getpid32 = {.nr = 20}; /* i386 getpid */
        _exit(raw_int80(&getpid32) == getpid() ? 0 : 1);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            die(EXIT_FAIL, "waitpid: %s", strerror(errno));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 1;
    if (WIFSIGNALED(status))
        fprintf(stderr, "probe: int $0x80 killed the process with signal %d (%s): the kernel has no "
                "i386 syscall entry (CONFIG_IA32_EMULATION off, or booted with ia32_emulation=0)\n",
                WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        fprintf(stderr, "probe: int $0x80 getpid did not return this process's pid\n");
    return 0;
}

static void __attribute__((noreturn))
child(const struct sock_filter *insns, size_t ninsns, const struct call *calls, size_t ncalls,
      struct shared *sh)
{
    struct rlimit none = {0, 0};
    sigset_t ill;
    if (setrlimit(RLIMIT_CORE, &none) || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) ||
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || signal(SIGILL, SIG_DFL) == SIG_ERR ||
        sigemptyset(&ill) || sigaddset(&ill, SIGILL) || sigprocmask(SIG_UNBLOCK, &ill, NULL)) {
        perror("probe: child setup");
        _exit(EXIT_FAIL);
    }
    struct sock_fprog prog = {.len = (unsigned short)ninsns, .filter = (struct sock_filter *)insns};

    __atomic_store_n(&sh->state, STATE_LOADING, __ATOMIC_SEQ_CST);
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
        sh->load_errno = errno;
        __atomic_store_n(&sh->state, STATE_LOAD_FAILED, __ATOMIC_SEQ_CST);
        _exit(EXIT_LOAD);
    }
    /* From here on: no libc, every syscall fails. */
    __atomic_store_n(&sh->state, STATE_LOADED, __ATOMIC_SEQ_CST);
    for (size_t i = 0; i < ncalls; i++) {
        const struct call *c = &calls[i];
        sh->results[i] = (c->flags & FLAG_I386) ? raw_int80(c) : raw_syscall64(c);
        __atomic_store_n(&sh->completed, i + 1, __ATOMIC_SEQ_CST);
    }
    __atomic_store_n(&sh->state, STATE_DONE, __ATOMIC_SEQ_CST);
    __builtin_trap();
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--check-ia32") == 0)
        return check_ia32() ? EXIT_OK : EXIT_IA32;
    if (argc != 3)
        die(EXIT_INPUT, "usage: probe FILTER CALLS | probe --check-ia32");

    size_t flen, clen;
    struct sock_filter *insns = read_file(argv[1], &flen);
    struct call *calls = read_file(argv[2], &clen);
    if (flen == 0 || flen % sizeof *insns)
        die(EXIT_INPUT, "%s: %zu bytes is not a non-empty sock_filter array", argv[1], flen);
    if (clen % sizeof *calls)
        die(EXIT_INPUT, "%s: %zu bytes is not an array of %zu-byte call records", argv[2], clen,
            sizeof *calls);
    size_t ninsns = flen / sizeof *insns, ncalls = clen / sizeof *calls;
    if (ninsns > MAX_INSNS)
        die(EXIT_INPUT, "%s: %zu instructions, at most %d", argv[1], ninsns, MAX_INSNS);
    if (ncalls > MAX_CALLS)
        die(EXIT_INPUT, "%s: %zu calls, at most %u", argv[2], ncalls, MAX_CALLS);
    check_filter(insns, ninsns);
    int any_i386 = 0;
    for (size_t i = 0; i < ncalls; i++) {
        check_call(&calls[i], i);
        any_i386 |= (calls[i].flags & FLAG_I386) != 0;
    }
    if (any_i386 && !check_ia32())
        return EXIT_IA32;

    size_t shlen = sizeof(struct shared) + ncalls * sizeof(int64_t);
    struct shared *sh = mmap(NULL, shlen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        die(EXIT_FAIL, "mmap: %s", strerror(errno));

    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die(EXIT_FAIL, "fork: %s", strerror(errno));
    if (pid == 0)
        child(insns, ninsns, calls, ncalls, sh);

    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            die(EXIT_FAIL, "waitpid: %s", strerror(errno));
    uint32_t state = __atomic_load_n(&sh->state, __ATOMIC_SEQ_CST);
    uint64_t completed = __atomic_load_n(&sh->completed, __ATOMIC_SEQ_CST);

    if (state == STATE_LOAD_FAILED)
        die(EXIT_LOAD, "seccomp(SECCOMP_SET_MODE_FILTER) refused the filter: %s",
            strerror(sh->load_errno));
    if (state != STATE_DONE || completed != ncalls) {
        char how[96];
        if (WIFSIGNALED(status))
            snprintf(how, sizeof how, "was killed by signal %d (%s)", WTERMSIG(status),
                     strsignal(WTERMSIG(status)));
        else if (WIFEXITED(status))
            snprintf(how, sizeof how, "exited with status %d", WEXITSTATUS(status));
        else
            snprintf(how, sizeof how, "ended with wait status 0x%x", status);
        if (completed < ncalls && state >= STATE_LOADED)
            die(EXIT_CHILD, "child %s during call %" PRIu64 " (nr %" PRIu64 "%s) of %zu", how,
                completed, calls[completed].nr, (calls[completed].flags & FLAG_I386) ? ", i386" : "",
                ncalls);
        die(EXIT_CHILD, "child %s before it finished (state %u, %" PRIu64 " of %zu calls)", how,
            state, completed, ncalls);
    }
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGILL)
        die(EXIT_CHILD, "child finished but did not die of SIGILL (wait status 0x%x)", status);

    for (size_t i = 0; i < ncalls; i++) {
        int64_t r = sh->results[i];
        /* A neutralized filter can only make a call return -errno, 0 <= errno <= 4095. */
        if (r > 0 || r < -4095)
            die(EXIT_CHILD, "call %zu (nr %" PRIu64 ") returned %" PRId64 ": not a seccomp errno, "
                "the syscall may have run", i, calls[i].nr, r);
    }
    for (size_t i = 0; i < ncalls; i++)
        printf("%" PRIu64 " %" PRId64 "\n", calls[i].nr, -sh->results[i]);
    if (fflush(stdout) || ferror(stdout))
        die(EXIT_FAIL, "writing the results failed");
    return EXIT_OK;
}
