/* Make i386 syscalls (`int $0x80` from this 64-bit program) and print "label errno" per call.
 *
 * The same command line as syscall_probe: LABEL=NR or LABEL=NR:A0,A1,... with i386
 * numbers and 32-bit arguments (numbers in any C base; missing arguments 0). seccomp
 * sees such a call with seccomp_data.arch AUDIT_ARCH_I386. The errno is 0 when the call
 * returned without error.
 *
 * The caller chooses calls that are harmless when they do run: the probe may run under
 * a filter that is wrong. Output goes through write(2) only.
 * Exit codes: 0 done, 2 bad input, 3 output failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void put(const char *s, size_t n) {
    while (n > 0) {
        ssize_t w = write(1, s, n);
        if (w <= 0)
            _exit(3);
        s += w;
        n -= (size_t)w;
    }
}

static void put_uint(unsigned long v) {
    char digits[24];
    size_t d = 0;
    do {
        digits[d++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    while (d > 0)
        put(&digits[--d], 1);
}

static void die(const char *why, const char *arg) {
    put("int80_probe: ", 13);
    put(why, strlen(why));
    put(": ", 2);
    put(arg, strlen(arg));
    put("\n", 1);
    _exit(2);
}

static uint32_t parse(const char *s, char **end, const char *arg) {
    errno = 0;
    unsigned long long v = strtoull(s, end, 0);
    if (errno != 0 || *end == s || v > UINT32_MAX)
        die("bad 32-bit number", arg);
    return (uint32_t)v;
}

/* The i386 entry takes nr in eax and the arguments in ebx, ecx, edx, esi, edi, ebp.
 * rbp is saved on the stack below the red zone, which the compiler may be using. */
static int32_t int80(uint32_t nr, const uint32_t a[6]) {
    uint64_t rax = nr;
    uint64_t a5 = a[5];
    __asm__ volatile("sub $128, %%rsp\n\t"
                     "push %%rbp\n\t"
                     "mov %[a5], %%rbp\n\t"
                     "int $0x80\n\t"
                     "pop %%rbp\n\t"
                     "add $128, %%rsp"
                     : "+a"(rax)
                     : "b"((uint64_t)a[0]), "c"((uint64_t)a[1]), "d"((uint64_t)a[2]),
                       "S"((uint64_t)a[3]), "D"((uint64_t)a[4]), [a5] "r"(a5)
                     : "r8", "r9", "r10", "r11", "memory", "cc");
    return (int32_t)(uint32_t)rax;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *eq = strchr(arg, '=');
        if (eq == NULL || eq == arg)
            die("expected LABEL=NR[:ARGS]", arg);
        char *p;
        uint32_t nr = parse(eq + 1, &p, arg);
        uint32_t a[6] = {0, 0, 0, 0, 0, 0};
        if (*p == ':') {
            for (int k = 0; k < 6; k++) {
                a[k] = parse(p + 1, &p, arg);
                if (*p != ',')
                    break;
            }
        }
        if (*p != '\0')
            die("trailing characters", arg);
        int32_t rc = int80(nr, a);
        put(arg, (size_t)(eq - arg));
        put(" ", 1);
        put_uint(rc < 0 && rc > -4096 ? (unsigned long)-rc : 0);
        put("\n", 1);
    }
    return 0;
}
