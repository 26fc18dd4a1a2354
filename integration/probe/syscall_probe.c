/* Make the syscalls named on the command line and print "label errno" per call.
 *
 * Each argument is LABEL=NR or LABEL=NR:A0,A1,...: the call syscall(NR, A0, ..., A5),
 * missing arguments 0, numbers in any C base (strtoull base 0; "-1" is all ones).
 * The errno is 0 when the call returned without error.
 *
 * The caller chooses the arguments, and must choose ones the kernel refuses or that
 * do nothing when the call gets through (bad fds, NULL pointers, zero lengths, invalid
 * flags): the probe may run under a filter that is wrong. It refuses 335 and 336
 * (uretprobe, uprobe on x86_64), which kill a caller outside a probe trampoline.
 * Output goes through write(2) only, so no stdio buffering issues extra syscalls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
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

static void put_str(const char *s) {
    put(s, strlen(s));
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
    put_str("syscall_probe: ");
    put_str(why);
    put_str(": ");
    put_str(arg);
    put_str("\n");
    _exit(2);
}

static unsigned long parse(const char *s, char **end, const char *arg) {
    errno = 0;
    unsigned long v = strtoull(s, end, 0);
    if (errno != 0 || *end == s)
        die("bad number", arg);
    return v;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *eq = strchr(arg, '=');
        if (eq == NULL || eq == arg)
            die("expected LABEL=NR[:ARGS]", arg);
        char *p;
        unsigned long nr = parse(eq + 1, &p, arg);
        if (nr == 335 || nr == 336)
            die("refusing uretprobe/uprobe", arg);
        unsigned long a[6] = {0, 0, 0, 0, 0, 0};
        if (*p == ':') {
            for (int k = 0; k < 6; k++) {
                a[k] = parse(p + 1, &p, arg);
                if (*p != ',')
                    break;
            }
        }
        if (*p != '\0')
            die("trailing characters", arg);
        long rc = syscall((long)nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        int err = rc < 0 ? errno : 0;
        put(arg, (size_t)(eq - arg));
        put(" ", 1);
        put_uint((unsigned long)err);
        put("\n", 1);
    }
    return 0;
}
