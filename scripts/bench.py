#!/usr/bin/env python3
"""`make bench`: what ocishim costs, each figure a ratio against the real runtime measured
in the same run, with the command that reproduces it. Prints Markdown and writes
docs/benchmarks.md (the README quotes it).

Sections:
- start-up: the wrapper's pass-through, the hook, the wrapper's create and `ocishim run`,
  cold (cache off) and with a compiled-filter cache hit, for runc and crun; podman run
  with and without the hook (crun, podman's default here, and runc). ocishim runs from a
  non-editable install in its own venv of Debian's /usr/bin/python3
  (.cache/bench-venv-debian), as users of Debian 12 get it: an editable install's import
  hook alone costs about 10 ms per start; and from `make install` with `python3 -IS`,
  the Debian package's way.
- per syscall: a C loop of getppid (a syscall the kernel's action cache passes without
  running the filter) and of personality(0xffffffff) (an argument-filtered rule in
  Docker's profile), without a filter, under libseccomp's program and under each mode.
- BPF instructions executed per syscall (the emulator) over nr 0..1100.
- the kernel's always-ALLOW set (bpf/cache.py): the same before and after, per profile
  and mode.

    make bench                       # or: python scripts/bench.py [--runs N] [--only startup]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from integration import bundles  # noqa: E402
from ocishim.arch import X32_SYSCALL_BIT  # noqa: E402
from ocishim.bpf import emu  # noqa: E402
from ocishim.bpf.cache import always_allowed  # noqa: E402
from ocishim.compile import compile_profile  # noqa: E402
from ocishim.patch import build, parse_mode  # noqa: E402
from ocishim.profile import load, to_oci  # noqa: E402

MODES = ("off", "auto", "max", "unnamed", "kernel:5.4")
PROFILES = bundles.PROFILES  # ../shared beside the checkout, or $OCISHIM_SHARED
BPF_PROFILES = [PROFILES / "docker-default.json", PROFILES / "containers-default.json"]
BENCH_VENV = REPO / ".cache" / "bench-venv-debian"
# The Python a user of Debian 12 makes a venv with, and the one the Debian package's
# launchers run (this machine kind also has another python3 first in PATH, which starts
# 1-2 ms slower and loads binascii, select and _ctypes as shared objects).
SYSTEM_PYTHON = "/usr/bin/python3"
OUT = REPO / "docs" / "benchmarks.md"
ARCHES = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]

LOOP_C = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
/* ns per call of one syscall: the fastest of B batches of N calls. Many short batches
   rather than a few long ones: on a busy machine nearly every long batch is disturbed,
   while some short one is not, and the fastest is the filter's own cost. */
int main(int argc, char **argv) {
    long n = atol(argv[2]), nr = strcmp(argv[1], "personality") == 0 ? SYS_personality : SYS_getppid;
    int batches = argc > 3 ? atoi(argv[3]) : 5;
    long arg = nr == SYS_personality ? 0xffffffffL : 0;
    double best = 1e18;
    for (int b = 0; b < batches; b++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (long i = 0; i < n; i++) syscall(nr, arg);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ns = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / n;
        if (ns < best) best = ns;
    }
    printf("%.1f\n", best);
    return 0;
}
"""


# ------------------------------------------------------------------ measuring

def once(argv: list[str], stdin: bytes | None = None, env: dict | None = None,
         before=None, after=None, fails: bool = False) -> float:
    """Wall time of one run of argv in ms; `before`/`after` run untimed around it.
    fails: exit 1 is the expected outcome (the state of a container that is not there)."""
    if before:
        before()
    # stderr into a file, not a pipe: a created container holds its stdio open.
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.run(argv, input=stdin, stdout=subprocess.DEVNULL, stderr=err, env=env)
        took = (time.perf_counter() - t0) * 1000
        err.seek(0)
        message = err.read()
    if after:
        after()
    if proc.returncode != (1 if fails else 0):
        raise SystemExit(f"bench: {' '.join(argv)} failed ({proc.returncode}): "
                         f"{message.decode(errors='replace')[-500:]}")
    return took


def medians(jobs: list[dict], runs: int) -> list[float]:
    """The median of each job (keyword arguments of `once`), the jobs taken in turn, so that
    the machine's load moves ocishim's figure and the runtime's alike (the ratio holds)."""
    times: list[list[float]] = [[] for _ in jobs]
    for _ in range(runs):
        for i, job in enumerate(jobs):
            times[i].append(once(**job))
    return [statistics.median(t) for t in times]


def bench_venv() -> Path:
    """A venv with ocishim installed from this checkout, not editable (re-installed each run)."""
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        base = SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) else sys.executable
        subprocess.run([base, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", str(REPO)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
                    str(REPO)], check=True)
    return BENCH_VENV / "bin"


def docker_seccomp() -> dict:
    seccomp = to_oci(load(str(PROFILES / "docker-default.json"), kernel=(6, 1), arch="amd64").profile)
    seccomp["architectures"] = list(ARCHES)
    return seccomp


def machine() -> list[str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    import ocishim.libseccomp as lib

    def version(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
        except (OSError, IndexError):
            return "not found"

    return [f"- {cpu}, {os.cpu_count()} cores, Linux {platform.release()}, "
            f"load average at start {os.getloadavg()[0]:.2f}",
            f"- {version([SYSTEM_PYTHON, '--version'])} (ocishim's; the bench itself runs on "
            f"{platform.python_version()}), libseccomp {'.'.join(map(str, lib.version()))}, "
            f"{version(['runc', '--version'])}, {version(['crun', '--version'])}, "
            f"{version(['podman', '--version'])}"]


# ------------------------------------------------------------------ start-up

class Startup:
    """The containers, bundles and settings the start-up figures use; cleaned up by close()."""

    def __init__(self, bindir: Path, runs: int) -> None:
        self.bin, self.runs = bindir, runs
        self.tmp = Path(tempfile.mkdtemp(prefix="h11-bench-"))
        self.tmp.chmod(0o700)
        self.rootfs = bundles.busybox_rootfs(self.tmp / "rootfs")
        self.bundle = self.tmp / "bundle"
        self.config = bundles.spec(self.bundle, self.rootfs, ["/bin/true"], docker_seccomp())
        self.original = self.config.read_bytes()
        self.cache = self.tmp / "cache"
        self.runc = shutil.which("runc")
        self.crun = shutil.which("crun")
        self.settings = {}
        for name, values in (("cold", {"cache": "off"}), ("hit", {"cache": str(self.cache)})):
            path = self.tmp / f"settings-{name}.json"
            path.write_text(json.dumps({**values, "log": str(self.tmp / "ocishim.log")}))
            path.chmod(0o644)
            self.settings[name] = path
        self.rows: list[tuple[str, str, float, str, float | None]] = []
        self.system_bin: Path | None = None  # the `python3 -IS` install (system_install)

    def env(self, which: str, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("OCISHIM_")}
        return {**base, "OCISHIM_CONFIG": str(self.settings[which]), **extra}

    def restore(self) -> None:
        self.config.write_bytes(self.original)

    def row(self, what: str, command: str, ours: float, theirs_label: str = "",
            theirs: float | None = None) -> None:
        self.rows.append((what, command, ours, theirs_label, theirs))
        ratio = f"{ours / theirs:.2f}x" if theirs else ""
        print(f"  {what}: {ours:.1f} ms" + (f" vs {theirs:.1f} ms ({ratio})" if theirs else ""),
              file=sys.stderr)

    def run_all(self) -> None:
        floor, venv_python = medians([dict(argv=[str(self.bin / "python"), "-I", "-S", "-c", "pass"]),
                                      dict(argv=[str(self.bin / "python"), "-c", "pass"])], self.runs)
        self.row("`python3 -I -S -c pass` (the floor)", "/usr/bin/python3 -I -S -c pass", floor)
        self.row("`python -c pass` in the venv", ".cache/bench-venv-debian/bin/python -c pass", venv_python)
        self.pass_through()
        self.hook()
        self.system_install()
        self.create()
        self.run_cmd()
        self.podman()
        self.containerd()

    def pass_through(self) -> None:
        cid = "h11-bench-state"
        subprocess.run([self.runc, "create", "--bundle", str(self.bundle), cid], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            theirs, ours = medians([
                dict(argv=[self.runc, "state", cid]),
                dict(argv=[str(self.bin / "ocishim-runtime"), "state", cid],
                     env=self.env("cold", OCISHIM_RUNTIME=self.runc))], self.runs)
            self.row("pass-through: `ocishim-runtime state ID`", "OCISHIM_RUNTIME=runc ocishim-runtime state ID",
                     ours, "`runc state ID`", theirs)
        finally:
            subprocess.run([self.runc, "delete", "--force", cid], stderr=subprocess.DEVNULL)
        theirs, ours = medians([
            dict(argv=[self.crun, "state", "h11-none"], fails=True),
            dict(argv=[str(self.bin / "ocishim-runtime"), "state", "h11-none"],
                 env=self.env("cold", OCISHIM_RUNTIME=self.crun), fails=True)], self.runs)
        self.row("pass-through: `ocishim-runtime state ID` (crun, no such container)",
                 "OCISHIM_RUNTIME=crun ocishim-runtime state none", ours, "`crun state none`", theirs)

    def hook(self) -> None:
        hook = [str(self.bin / "ocishim"), "hook", "precreate"]
        subprocess.run(hook, input=self.original, stdout=subprocess.DEVNULL, env=self.env("hit"),
                       check=True)  # the entry for the hits
        floor, cold, hit = medians([dict(argv=[str(self.bin / "python"), "-I", "-S", "-c", "pass"]),
                                    dict(argv=hook, stdin=self.original, env=self.env("cold")),
                                    dict(argv=hook, stdin=self.original, env=self.env("hit"))], self.runs)
        for which, ours in (("cold", cold), ("hit", hit)):
            self.row(f"`ocishim hook precreate`, {which}" + (" (cache off)" if which == "cold" else ""),
                     "ocishim hook precreate < config.json  # Docker's profile, x86_64 x86 x32",
                     ours, "`python3 -I -S -c pass`", floor)

    def system_install(self) -> None:
        """The Debian package's way to start ocishim: /usr/bin/python3 -IS (the same #!
        line as debian/rules writes), here from `make install` (scripts/install_prefix.sh)
        into a private prefix; skipped where that Python lacks the dependencies."""
        python = "/usr/bin/python3"
        probe = subprocess.run([python, "-c", "import elftools, psutil\ntry:\n import seccomp\n"
                                "except ImportError:\n import pyseccomp"], capture_output=True)
        if probe.returncode != 0:
            print(f"  ({python} lacks the dependencies: no -IS rows)", file=sys.stderr)
            return
        prefix = self.tmp / "prefix"
        subprocess.run([str(REPO / "scripts" / "install_prefix.sh"), "install", "", str(prefix), python],
                       check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        # make install copies sources only: compile them as the Debian package does.
        subprocess.run([python, "-m", "compileall", "-q", str(prefix / "lib" / "ocishim")], check=True)
        self.system_bin = prefix / "bin"
        hook = [str(prefix / "bin" / "ocishim"), "hook", "precreate"]
        subprocess.run(hook, input=self.original, stdout=subprocess.DEVNULL, env=self.env("hit"),
                       check=True)  # this install's own entry
        cid = "h11-bench-state-is"
        subprocess.run([self.runc, "create", "--bundle", str(self.bundle), cid], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            floor, theirs, ours, hit = medians([
                dict(argv=[python, "-I", "-S", "-c", "pass"]),
                dict(argv=[self.runc, "state", cid]),
                dict(argv=[str(prefix / "bin" / "ocishim-runtime"), "state", cid],
                     env=self.env("cold", OCISHIM_RUNTIME=self.runc)),
                dict(argv=hook, stdin=self.original, env=self.env("hit"))], self.runs)
        finally:
            subprocess.run([self.runc, "delete", "--force", cid], stderr=subprocess.DEVNULL)
        self.row("pass-through, `python3 -IS` (the Debian package's #! line; make install)",
                 "OCISHIM_RUNTIME=runc /usr/bin/ocishim-runtime state ID", ours, "`runc state ID`", theirs)
        self.row("`ocishim hook precreate`, hit, `python3 -IS`",
                 "/usr/bin/ocishim hook precreate < config.json", hit, "`/usr/bin/python3 -I -S -c pass`",
                 floor)

    def _create(self, argv_prefix: list[str], env: dict | None) -> dict:
        cid = "h11-bench-create"

        def after() -> None:
            subprocess.run([self.runc, "delete", "--force", cid], stderr=subprocess.DEVNULL)
            self.restore()
        return dict(argv=[*argv_prefix, "create", "--bundle", str(self.bundle), cid], env=env,
                    before=self.restore, after=after)

    def create(self) -> None:
        wrapper = str(self.bin / "ocishim-runtime")
        theirs, cold, hit = medians([self._create([self.runc], None),
                                     self._create([wrapper], self.env("cold", OCISHIM_RUNTIME=self.runc)),
                                     self._create([wrapper], self.env("hit", OCISHIM_RUNTIME=self.runc))],
                                    self.runs)
        for which, ours in (("cold", cold), ("hit", hit)):
            self.row(f"`ocishim-runtime create`, {which}", "OCISHIM_RUNTIME=runc ocishim-runtime create "
                     "--bundle B ID", ours, "`runc create --bundle B ID`", theirs)

    def run_cmd(self) -> None:
        ocishim = str(self.bin / "ocishim")
        env_base = {k: v for k, v in os.environ.items() if k != "OCISHIM_CACHE"}
        envs = {w: {**env_base, "OCISHIM_CACHE": "off" if w == "cold" else str(self.cache)}
                for w in ("cold", "hit")}
        # runc given the config ocishim writes for it, started by the bench: what runc's own
        # compile of the rewritten profile (the E(A) rule, runtimes.md) costs, without ocishim.
        patched = json.loads(subprocess.run([ocishim, "hook", "precreate"], input=self.original,
                                            capture_output=True, check=True, env=self.env("hit")).stdout)
        rewritten = bundles.spec(self.tmp / "bundle-rewritten", self.rootfs, ["/bin/true"],
                                 patched["linux"]["seccomp"]).parent
        system = ([dict(argv=[str(self.system_bin / "ocishim"), "run", "--runtime", "runc", str(self.bundle)],
                        env=envs["hit"], before=self.restore)] if self.system_bin is not None else [])
        for job in system:  # that install's own entry (its code fingerprint is its own)
            once(**job)
        theirs, plain_rewritten, cold, hit, *system_hit = medians(
            [dict(argv=[self.runc, "run", "--bundle", str(self.bundle), "h11-bench-run"], before=self.restore),
             dict(argv=[self.runc, "run", "--bundle", str(rewritten), "h11-bench-run"])]
            + [dict(argv=[ocishim, "run", "--runtime", "runc", str(self.bundle)], env=envs[w],
                    before=self.restore) for w in ("cold", "hit")] + system,
            max(self.runs, 25))  # the 1.5x limit is decided here: as many runs as podman's
        self.row("`runc run` of the config ocishim writes for runc (no ocishim process)",
                 "runc run --bundle B2 ID  # B2: the hook's output for B", plain_rewritten,
                 "`runc run ID`", theirs)
        for which, ours in (("cold", cold), ("hit", hit)):
            self.row(f"`ocishim run --runtime runc`, {which}", "ocishim run --runtime runc B",
                     ours, "`runc run ID`", theirs)
        for ours in system_hit:
            self.row("`ocishim run --runtime runc`, hit, `python3 -IS`",
                     "/usr/bin/ocishim run --runtime runc B", ours, "`runc run ID`", theirs)
        prefix = bundles.crun_prefix()
        crun = [*prefix, self.crun, *bundles.CRUN_ARGS]
        theirs, cold, hit = medians(
            [dict(argv=[*crun, "run", "--bundle", str(self.bundle), "h11-bench-crun"], before=self.restore)]
            + [dict(argv=[*prefix, ocishim, "run", "--runtime", "crun",
                          *(f"--runtime-arg={a}" for a in bundles.CRUN_ARGS), str(self.bundle)],
                    env=envs[w], before=self.restore) for w in ("cold", "hit")], self.runs)
        for which, ours in (("cold", cold), ("hit", hit)):
            self.row(f"`ocishim run --runtime crun`, {which}", "unshare -m ... ocishim run --runtime crun "
                     "--runtime-arg=--cgroup-manager=disabled B", ours,
                     "`unshare -m ... crun --cgroup-manager=disabled run ID`", theirs)

    def podman(self) -> None:
        """podman run with and without the hook, for podman's default runtime here (crun,
        which loads ocishim's program from the annotation) and for runc (which compiles the
        rewritten profile itself). Three more rows take runc's figure apart: /bin/cat as
        the hook (what podman's running of any precreate hook costs), a hook that only
        decodes and re-encodes the config in `python3 -IS` (the least a Python hook costs
        podman), and that hook putting in ocishim's output (what runc's compile of the
        rewritten profile costs)."""
        if shutil.which("podman") is None:
            return
        seccomp = self.tmp / "seccomp.json"
        seccomp.write_text(json.dumps(docker_seccomp()))
        patched = self.tmp / "patched.json"
        patched.write_bytes(subprocess.run([str(self.bin / "ocishim"), "hook", "precreate"],
                                           input=self.original, capture_output=True, check=True,
                                           env=self.env("hit")).stdout)
        hooks = {"venv": self._hooks_dir("hook", self.bin / "ocishim")}
        if self.system_bin is not None:
            hooks["IS"] = self._hooks_dir("hook-is", self.system_bin / "ocishim")
        for name, body in (("echo", ""), ("echo-patched", (
                f"p = json.loads(open({str(patched)!r}, 'rb').read())\n"
                "c['linux']['seccomp'] = p['linux']['seccomp']\n"
                "c.setdefault('annotations', {}).update(p.get('annotations', {}))\n"))):
            script = self.tmp / f"{name}.py"
            script.write_text("#!/usr/bin/python3 -IS\nimport json, sys\n"
                              f"c = json.loads(sys.stdin.buffer.read())\n{body}"
                              "sys.stdout.write(json.dumps(c))\n")
            script.chmod(0o755)
            hooks[name] = self._hooks_dir(name, script, args=[name], env=False)
        hooks["cat"] = self._hooks_dir("cat", Path("/bin/cat"), args=["cat"], env=False)
        empty = self.tmp / "no-hooks.d"
        empty.mkdir()
        tail = ["run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                "--security-opt", f"seccomp={seccomp}", "--rootfs", str(self.rootfs), "/bin/true"]
        for runtime in ("crun", "runc"):
            if runtime == "crun":  # crun refuses this machine's hybrid cgroups (runtimes.md)
                base = [*bundles.crun_prefix(), "podman", "--runtime", "crun", "--cgroup-manager",
                        "cgroupfs"]
                tail_here = [tail[0], "--cgroups=disabled", *tail[1:]]
                shown = "unshare -m ... podman --runtime crun ... run --cgroups=disabled"
                which = [k for k in ("venv", "IS") if k in hooks]
            else:
                base = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
                tail_here = tail
                shown = "podman --runtime runc ... run"
                which = [k for k in ("venv", "IS", "cat", "echo", "echo-patched") if k in hooks]
            for k in which:  # warms the cache of each install
                subprocess.run([*base, "--hooks-dir", str(hooks[k]), *tail_here], check=True,
                               stdout=subprocess.DEVNULL)
            # podman's own time moves by tens of ms from run to run: more runs than the others.
            theirs, *ours = medians([dict(argv=[*base, "--hooks-dir", str(empty), *tail_here])]
                                    + [dict(argv=[*base, "--hooks-dir", str(hooks[k]), *tail_here])
                                       for k in which], max(self.runs, 25))
            labels = {"venv": "with the hook, hit",
                      "IS": "with the hook, hit, `python3 -IS`",
                      "cat": "with /bin/cat as the hook (the config passed on as it is)",
                      "echo": "with a `python3 -IS` hook that only decodes and re-encodes the config",
                      "echo-patched": "with that hook putting in ocishim's output (runc compiles the "
                                      "rewritten profile)"}
            for k, t in zip(which, ours):
                self.row(f"podman run ({runtime}) {labels[k]}",
                         f"{shown} --security-opt seccomp=P --rootfs R /bin/true  # --hooks-dir D",
                         t, "the same without the hook", theirs)

    def _hooks_dir(self, name: str, path: Path, args: list[str] | None = None,
                   env: bool = True) -> Path:
        """A hooks.d directory with one precreate hook."""
        directory = self.tmp / f"hooks-{name}"
        directory.mkdir()
        hook = {"path": str(path), "args": args or ["ocishim", "hook", "precreate"]}
        if env:
            hook["env"] = [f"OCISHIM_CONFIG={self.settings['hit']}"]
        (directory / "ocishim-precreate.json").write_text(json.dumps(
            {"version": "1.0.0", "hook": hook, "when": {"always": True}, "stages": ["precreate"]}))
        return directory

    def containerd(self) -> None:
        """`ctr run --rm --seccomp` (containerd's default profile) through the wrapper or not,
        one containerd started for the bench (integration/test_containerd.py's helpers)."""
        if any(shutil.which(t) is None for t in ("containerd", "ctr", "containerd-shim-runc-v2")):
            return
        from integration import test_containerd as tc

        os.environ.pop("OCISHIM_CACHE", None)  # set by integration/conftest.py for the tests
        example = tc.EXAMPLE.read_text().replace(tc.EXAMPLE_BINARY, str(self.bin / "ocishim-runtime"))
        env = self.env("hit", OCISHIM_RUNTIME=self.runc)
        daemon = tc.start_containerd(self.tmp / "containerd", example, env)
        try:
            def ctr(wrapped: bool) -> list[str]:
                runtime = ["--runc-binary", str(self.bin / "ocishim-runtime")] if wrapped else []
                return ["ctr", "--address", daemon.address, "--namespace", daemon.namespace, "run", "--rm",
                        "--seccomp", *runtime, "--rootfs", str(self.rootfs), "h11-bench-ctr", "/bin/true"]
            subprocess.run(ctr(True), check=True, capture_output=True)  # warms the cache
            theirs, ours = medians([dict(argv=ctr(False)), dict(argv=ctr(True))], self.runs)
            self.row("`ctr run` through the wrapper, hit", "ctr run --rm --seccomp --runc-binary "
                     "ocishim-runtime --rootfs R ID /bin/true", ours, "the same with runc", theirs)
        finally:
            tc.stop_containerd(daemon)

    def run_phases(self) -> list[str]:
        """`ocishim run --runtime runc` with a cache hit, phase by phase (scripts/run_phases.py:
        timers around the steps of integrations/run.py), medians of the runs; beside it
        `runc run` of the config ocishim writes for runc."""
        env = {k: v for k, v in os.environ.items() if k != "OCISHIM_CACHE"}
        env["OCISHIM_CACHE"] = str(self.cache)
        argv = [str(self.bin / "python"), str(REPO / "scripts" / "run_phases.py")]
        tail = ["run", "--runtime", "runc", str(self.bundle)]
        subprocess.run([*argv, str(time.perf_counter()), *tail], env=env, check=True,
                       capture_output=True)  # the entry for the hits
        phases: dict[str, list[float]] = {}
        for _ in range(self.runs):
            spawned = time.perf_counter()
            proc = subprocess.run([*argv, str(spawned), *tail], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, check=True)
            end = (time.perf_counter() - spawned) * 1000
            m = json.loads(proc.stderr.decode().strip().splitlines()[-1])
            steps = [("Python's start (site included)", m["script"]),
                     ("imports, command line, libseccomp's version", m["find_runtime start"] - m["script"]),
                     ("read and decode config.json", m["read_bundle end"] - m["read_bundle start"]),
                     ("the cache: key, entry, its checks, the config's checks",
                      m["_rewrite_cached end"] - m["_rewrite_cached start"]),
                     ("write the private bundle", m["write_bundle end"] - m["write_bundle start"]),
                     ("start runc", m["_spawn end"] - m["_spawn start"]),
                     ("runc run, until it exits", m["_wait end"] - m["_wait start"]),
                     ("remove the private bundle", m["_remove end"] - m["_remove start"]),
                     ("leave (os._exit) and be reaped", end - m["done"])]
            steps.append(("the rest (between the steps)", end - sum(t for _, t in steps)))
            steps.append(("the whole run", end))
            for label, took in steps:
                phases.setdefault(label, []).append(took)
        out = ["| phase | ms |", "|---|---:|"]
        out += [f"| {label} | {statistics.median(t):.1f} |" for label, t in phases.items()]
        return out

    def imports(self) -> list[str]:
        """Where a start's time goes: `python -X importtime`, the biggest top-level imports."""
        out = ["| command | module (with what it imports) | ms |", "|---|---|---:|"]
        hook = [str(self.bin / "ocishim"), "hook", "precreate"]
        cases = [("ocishim-runtime state ID", [str(self.bin / "ocishim-runtime"), "state", "h11-none"],
                  None, self.env("cold", OCISHIM_RUNTIME=self.runc)),
                 ("ocishim hook precreate, hit", hook, self.original, self.env("hit")),
                 ("ocishim hook precreate, cold", hook, self.original, self.env("cold"))]
        for label, argv, stdin, env in cases:
            proc = subprocess.run([str(self.bin / "python"), "-X", "importtime", *argv], input=stdin,
                                  capture_output=True, env=env)
            top = []
            for line in proc.stderr.decode(errors="replace").splitlines():
                if not line.startswith("import time:") or "|" not in line[13:]:
                    continue
                _, cumulative, name = line[12:].split("|")
                if name.startswith(" ") and not name.startswith("  ") and cumulative.strip().isdigit():
                    top.append((int(cumulative) / 1000, name.strip()))
            top.sort(reverse=True)
            total = sum(t for t, _ in top)
            out.append(f"| `{label}` | all top-level imports | {total:.1f} |")
            out += [f"| | {name} | {t:.1f} |" for t, name in top[:6]]
        return out

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def markdown(self) -> list[str]:
        out = ["| what | ocishim | plain | ratio | reproduce |", "|---|---:|---|---:|---|"]
        for what, command, ours, label, theirs in self.rows:
            plain = f"{label} {theirs:.1f} ms" if theirs else ""
            ratio = f"{ours / theirs:.2f}x" if theirs else ""
            out.append(f"| {what} | {ours:.1f} ms | {plain} | {ratio} | `{command}` |")
        return out


# ------------------------------------------------------------------ per syscall

def per_syscall(bindir: Path, tmp: Path, iterations: int, batches: int, rounds: int = 7) -> list[str]:
    source = tmp / "loop.c"
    source.write_text(LOOP_C)
    binary = tmp / "loop"
    subprocess.run(["gcc", "-O2", "-static", "-o", str(binary), str(source)], check=True)
    profile = tmp / "docker.json"
    profile.write_text(json.dumps(docker_seccomp()))
    ocishim = str(bindir / "ocishim")
    loop = [str(binary)]
    count = [str(iterations), str(batches)]
    variants = [("no filter", lambda call: [*loop, call, *count])]
    for mode in ("off", *MODES[1:]):
        label = "unpatched (off)" if mode == "off" else mode
        variants.append((label, lambda call, mode=mode: [ocishim, "exec", str(profile), "--enosys", mode,
                                                          "--", *loop, call, *count]))
    crun = shutil.which("crun")
    if crun:  # the loop in a crun container: crun's own compile, then ocishim's program (unnamed)
        rootfs = bundles.busybox_rootfs(tmp / "rootfs", [binary])
        for label, patched in (("crun's compile", False), ("crun + ocishim unnamed", True)):
            for call in ("getppid", "personality"):
                bundle = tmp / f"{call}-{patched}"
                bundles.spec(bundle, rootfs, ["/bin/loop", call, *count], docker_seccomp())
                if patched:
                    subprocess.run([ocishim, "patch", str(bundle), "--format", "config", "-o",
                                    str(bundle / "config.json")], check=True)
            variants.append((label, lambda call, patched=patched: [
                *bundles.crun_prefix(), crun, *bundles.CRUN_ARGS, "run", "--bundle",
                str(tmp / f"{call}-{patched}"), f"h11-bench-loop-{os.getpid()}"]))
    out = ["| call | " + " | ".join(label for label, _ in variants) + " | worst patched/unpatched |",
           "|---|" + "---:|" * (len(variants) + 1)]
    patched_modes = [i for i, (label, _) in enumerate(variants) if label in MODES[1:]]
    for call in ("getppid", "personality"):
        found: list[list[float]] = [[] for _ in variants]
        for _ in range(rounds):  # round robin, so that a change in the machine's load hits every variant
            for i, (_, argv) in enumerate(variants):
                found[i].append(float(subprocess.run(argv(call), capture_output=True, text=True,
                                                     check=True).stdout))
        # Each run is the fastest of its batches; of the runs, the median: a run now and then
        # is a few per cent slower or faster than the rest, for every variant alike (getppid,
        # which never runs the filter, shows it), and a minimum would keep the lucky one.
        cells = [statistics.median(f) for f in found]
        # The ratio of each run to the unpatched run of the same round, the median of those:
        # the runs of one round share the machine's load.
        worst = max(statistics.median(v / u for v, u in zip(found[i], found[1])) for i in patched_modes)
        out.append(f"| {call} | " + " | ".join(f"{c:.0f} ns" for c in cells) + f" | {worst:.3f} |")
        print(f"  {call}: {cells}", file=sys.stderr)
    counts, alone = filter_instructions()
    out.append(f"| personality: BPF instructions run, x86_64 / x86 / x32 (emulator; libseccomp's program "
               f"alone: {alone}) | | " + " | ".join(counts.get(label, "") for label, _ in variants[1:]) + " | |")
    return out


def filter_instructions() -> tuple[dict[str, str], str]:
    """The instructions the filter runs for personality(0xffffffff) on each arch of the loop's
    profile, per column label, and for libseccomp's program alone: what each mode adds to or
    takes from an argument-filtered call."""
    from ocishim import syscalls
    from ocishim.patch import patch_profile

    profile = load_seccomp(docker_seccomp())

    def run(program, arches) -> str:
        return " / ".join(str(len(emu.run(program, arch, syscalls.resolve(arch.name, "personality"),
                                          (0xFFFFFFFF,)).trace)) for arch in arches)
    cells = {}
    for mode in MODES:
        patched = patch_profile(profile, mode)
        cells["unpatched (off)" if mode == "off" else mode] = run(patched.program, patched.compiled.arches)
    cells["crun + ocishim unnamed"] = cells["unnamed"]
    return cells, run(patched.compiled.program, patched.compiled.arches)


def load_seccomp(seccomp: dict):
    """The Profile of a linux.seccomp object, read as `ocishim exec` reads the loop's file."""
    path = Path(tempfile.mkdtemp(prefix="h11-bench-p-")) / "docker.json"
    try:
        path.write_text(json.dumps(seccomp))
        return load(str(path)).profile
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


# ------------------------------------------------------------------ the audit agent

def audit_load(runs: int, calls: int = 200_000) -> list[str]:
    """scripts/bench_audit.py, runs times; the table of the best run and every run's rate."""
    results = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_audit.py"), str(calls)],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            return [f"bench_audit.py failed: {proc.stderr.strip().splitlines()[-1:]}"]
        results.append(json.loads(proc.stdout))
    best = max(results, key=lambda r: r["notifications_per_s"])
    a, u = best["audited_us"], best["unaudited_us"]
    return ["| calls | notifications/s | audited p50 | p99 | p99.9 | unaudited p50 | p99 | log |",
            "|---:|---:|---:|---:|---:|---:|---:|---|",
            f"| {best['calls']} | {best['notifications_per_s']} | {a['p50']:.1f} µs | {a['p99']:.1f} µs | "
            f"{a['p999']:.1f} µs | {u['p50']:.2f} µs | {u['p99']:.2f} µs | "
            f"{best['log_lines']} lines, {best['log_bytes']} bytes |", "",
            "All runs (notifications/s): " + ", ".join(str(r["notifications_per_s"]) for r in results) + "."]


# ------------------------------------------------------------------ the emulator

def bpf_counts() -> tuple[list[str], list[str]]:
    counts = ["| profile | arch | program | length | mean | worst | most added |",
              "|---|---|---|---:|---:|---:|---:|"]
    from ocishim import syscalls

    cache = ["| profile | arch | mode | always-ALLOW before | after | lost | gained (rules libseccomp lacks) |",
             "|---|---|---|---:|---:|---:|---|"]
    for path in BPF_PROFILES:
        compiled = compile_profile(load(str(path)).profile)
        for arch in compiled.arches:
            base = X32_SYSCALL_BIT if arch.name == "x32" else 0
            nrs = [base + n for n in range(1101)]
            raw = [len(emu.run(compiled.program, arch, nr).trace) for nr in nrs]
            before = always_allowed(compiled.program, arch, nrs)
            counts.append(f"| {path.name} | {arch.name} | libseccomp (unpatched) | {len(compiled.program)} | "
                          f"{sum(raw) / len(raw):.2f} | {max(raw)} | 0 |")
            for mode in MODES:
                program = build(compiled, parse_mode(mode)).program
                c = [len(emu.run(program, arch, nr).trace) for nr in nrs]
                added = max(a - b for a, b in zip(c, raw))
                counts.append(f"| {path.name} | {arch.name} | --enosys {mode} | {len(program)} | "
                              f"{sum(c) / len(c):.2f} | {max(c)} | {added} |")
                after = always_allowed(program, arch, nrs)
                gained = " ".join(str(syscalls.name(arch.name, nr) or nr) for nr in sorted(after - before))
                cache.append(f"| {path.name} | {arch.name} | {mode} | {len(before)} | {len(after)} | "
                             f"{len(before - after)} | {gained} |")
    return counts, cache


# ------------------------------------------------------------------ recorded syscall mixes

ROOTFS_CACHE = REPO / ".cache" / "rootfs"
WORKLOADS = {  # name: (rootfs under .cache/rootfs, command run in it)
    "bash": ("trixie", ["/bin/bash", "-c", "for f in /bin/*; do [ -x \"$f\" ]; done; ls -l / >/dev/null"]),
    "apt": ("trixie", ["/usr/bin/apt-cache", "show", "bash"]),
    "python3": ("trixie-python3", ["/usr/bin/python3", "-c", "import json, os; json.dumps(sorted(os.listdir('/')))"]),
}


def recorded_mix(root: Path, command: list[str], tmp: Path) -> dict[str, int]:
    """syscall name -> calls, from `strace -f -c` of command chrooted into root."""
    out = tmp / "strace.txt"
    subprocess.run(["strace", "-f", "-c", "-o", str(out), "chroot", str(root), *command],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    mix: dict[str, int] = {}
    for line in out.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[3].isdigit() and fields[-1] != "total":
            mix[fields[-1]] = int(fields[3])
    return mix


def mix_counts(tmp: Path) -> list[str]:
    """Instructions per syscall (x86_64, arguments 0) weighted by recorded real workloads."""
    from ocishim import syscalls

    if shutil.which("strace") is None:
        return ["strace not found: no recorded mixes."]
    compiled = compile_profile(load(str(PROFILES / "docker-default.json")).profile)
    arch = next(a for a in compiled.arches if a.name == "x86_64")
    programs = [("unpatched", compiled.program)] + [
        (mode, build(compiled, parse_mode(mode)).program) for mode in MODES]
    out = ["| workload | calls (distinct) | " + " | ".join(label for label, _ in programs) + " |",
           "|---|---:|" + "---:|" * len(programs)]
    for name, (suite, command) in WORKLOADS.items():
        root = ROOTFS_CACHE / suite
        if not (root / ".ocishim-rootfs.json").exists():
            out.append(f"| {name} | rootfs {suite} not built (make test builds it) |" + " |" * len(programs))
            continue
        mix = recorded_mix(root, command, tmp)
        known = {n: c for n, c in mix.items() if syscalls.resolve("x86_64", n) is not None}
        total = sum(known.values())
        cells = []
        for _, program in programs:
            weighted = sum(c * len(emu.run(program, arch, syscalls.resolve("x86_64", n)).trace)
                           for n, c in known.items())
            cells.append(f"{weighted / total:.2f}")
        out.append(f"| {name}: `{' '.join(command)}` | {total} ({len(known)}) | " + " | ".join(cells) + " |")
    return out


# ------------------------------------------------------------------ main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10, help="runs per start-up figure (median; default 10)")
    ap.add_argument("--iterations", type=int, default=20_000, help="calls per syscall batch")
    ap.add_argument("--batches", type=int, default=100, help="batches per run of the syscall loop (the fastest counts)")
    ap.add_argument("--only", action="append", choices=("startup", "syscall", "bpf", "audit"))
    ap.add_argument("--out", type=Path, default=OUT, help="the Markdown file (default docs/benchmarks.md)")
    args = ap.parse_args()
    only = set(args.only or ("startup", "syscall", "bpf", "audit"))
    if os.geteuid() != 0 and only & {"startup", "syscall"}:
        raise SystemExit("bench: start-up and per-syscall figures need root (real runtimes)")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    doc = ["# Benchmarks", "", f"Written by `make bench` ({started}); every ratio is measured in "
           "the same run against the plain runtime. Medians; figures move with the machine's load, "
           "ratios much less.", "", "## Machine", "", *machine(), ""]
    bindir = bench_venv() if only & {"startup", "syscall"} else None
    tmp = Path(tempfile.mkdtemp(prefix="h11-bench-c-"))
    try:
        if "startup" in only:
            print("start-up:", file=sys.stderr)
            startup = Startup(bindir, args.runs)
            try:
                startup.run_all()
                breakdown = startup.imports()
                phases = startup.run_phases()
            finally:
                startup.close()
            doc += ["## Start-up", "", f"Docker's default profile (x86_64, x86, x32), busybox /bin/true, "
                    f"median of {args.runs} runs ({max(args.runs, 25)} for `runc run` and podman, whose "
                    "ratios decide limits); ocishim from a non-editable install. \"hit\": the "
                    "compiled-filter cache holds the filter; \"cold\": the cache is off.", "",
                    *startup.markdown(), "", "### Where the start-up time goes", "",
                    "`python -X importtime` of one run each (cumulative, this machine's load "
                    "included); the rest of a start is Python itself (the floor above), reading and "
                    "checking the config, and on a miss libseccomp's compile and the patch.", "",
                    *breakdown, "", "### `ocishim run --runtime runc`, hit, phase by phase", "",
                    f"Medians of {args.runs} runs of the venv's install (`python scripts/run_phases.py "
                    "SPAWNED run --runtime runc B`: timers around the steps of "
                    "ocishim/integrations/run.py; Python's start is measured from the parent's "
                    "spawn on the same monotonic clock). Compare with `runc run` of the plain and "
                    "of the rewritten config above, measured in other runs.", "", *phases, ""]
        if "syscall" in only:
            print("per syscall:", file=sys.stderr)
            doc += ["## Per syscall", "", f"A static C loop (`syscall(nr, arg)`, the fastest of {args.batches} "
                    f"batches of {args.iterations} calls; the median of 7 runs taken in turn; the ratio is "
                    "the median of each run's ratio to the unpatched run of its round) under "
                    "`ocishim exec docker.json --enosys MODE` (`python scripts/bench.py --only syscall`). "
                    "getppid is allowed for every argument, so the kernel's action cache passes it without "
                    "running the filter; personality(0xffffffff) runs the filter to an argument rule. The last "
                    "two columns run the same loop in a crun container: crun compiling the profile itself "
                    "(libseccomp without the binary tree), and crun loading ocishim's program (annotation).", "",
                    *per_syscall(bindir, tmp, args.iterations, args.batches), ""]
        if "audit" in only:
            print("audit agent:", file=sys.stderr)
            doc += ["## Audit agent", "", "One process looping on a call the filter refuses (reboot, "
                    "ENOSYS in E(A) of Docker's profile), every call notified to a real `ocishim agent` "
                    "(`python scripts/bench_audit.py 200000`, best of 3 runs by notifications/s); "
                    "the unaudited column is the same loop under the plain filter. docs/audit.md "
                    "has the design and earlier runs.", "", *audit_load(3), ""]
        if "bpf" in only:
            print("emulator:", file=sys.stderr)
            counts, cache = bpf_counts()
            doc += ["## BPF instructions per syscall", "", "Instructions executed by the emulator for "
                    "nr 0..1100 (x32: 0x40000000 | nr): mean, worst, and the most the stub adds to any one "
                    "syscall over libseccomp's program.", "", *counts, "",
                    "### Weighted by real workloads", "", "The same count on x86_64 (arguments 0), "
                    "weighted by the calls `strace -f -c` recorded for each command chrooted into the "
                    "trixie root file systems the integration tests build, Docker's default profile.", "",
                    *mix_counts(tmp), "",
                    "## The kernel's always-ALLOW set", "", "Syscalls the kernel's action cache answers "
                    "ALLOW without running the filter (bpf/cache.py replays its evaluator), nr 0..1100 "
                    "per arch: the patch must keep every one of them (lost: 0). It gains the syscalls "
                    "whose ALLOW rules ocishim compiles because the host's libseccomp does not know "
                    "their names (without ocishim they answer the default action).", "", *cache, ""]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    doc += [f"Load average at the end: {os.getloadavg()[0]:.2f}.", ""]
    text = "\n".join(doc)
    print(text)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
