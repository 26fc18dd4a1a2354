"""The host report: `ocishim doctor`.

What this machine's stack does with syscalls a profile cannot know about depends on
things no configuration file states: which libseccomp each runtime really uses (Debian
links runc against the system's, static builds carry their own), whether the runtime
takes crun's raw BPF annotation, and the highest number that libseccomp can name,
above which runc's own stub answers ENOSYS. So each of these is read from the binary
(ELF dynamic section with pyelftools, strings in the file) or asked of the library the
binary would load, in a child process so that two libseccomp copies never meet.
"""

from __future__ import annotations

import glob
import json
import mmap
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from . import libseccomp, syscalls
from .arch import BY_NAME, Arch

BPF_ANNOTATION = b"run.oci.seccomp_bpf_data"
RUNTIMES = ("runc", "crun")
# The arches a native filter carries (Docker's archMap, runc's and crun's defaults).
FAMILIES: Mapping[str, tuple[str, ...]] = {
    "x86_64": ("x86_64", "x86", "x32"), "aarch64": ("aarch64", "arm"), "x86": ("x86",),
    "arm": ("arm",), "ppc64le": ("ppc64le",), "s390x": ("s390x", "s390"),
    "riscv64": ("riscv64",), "mipsel64": ("mipsel64", "mipsel64n32", "mipsel"),
    "loongarch64": ("loongarch64",),
}
LIBRARY_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
                "/lib", "/usr/lib", "/usr/local/lib")
# Symbols and strings only a copy of libseccomp carries (for a static build, stripped or not).
EMBEDDED_MARKERS = (b"seccomp_syscall_resolve_name_arch", b"seccomp_export_bpf",
                    b"libseccomp")
COMMAND_TIMEOUT = 10


@dataclass(frozen=True)
class RuntimeLibseccomp:
    how: str | None  # "linked", "embedded" or None (no seccomp support found)
    path: str | None  # the shared library the loader would map, when linked
    version: str | None

    def as_json(self) -> dict:
        return {"how": self.how, "path": self.path, "version": self.version}


@dataclass(frozen=True)
class RuntimeReport:
    name: str
    path: str
    version: str | None
    libseccomp: RuntimeLibseccomp
    bpf_annotation: bool
    max_nr: Mapping[str, int]  # arch -> highest number its libseccomp names
    unknown: Mapping[str, tuple[str, ...]]  # arch -> names this kernel has that it cannot name
    verdict: str  # "exact", "approximate" or "broken"
    why: str

    def as_json(self) -> dict:
        return {"name": self.name, "path": self.path, "version": self.version,
                "libseccomp": self.libseccomp.as_json(), "bpf_annotation": self.bpf_annotation,
                "max_nr": dict(self.max_nr), "verdict": self.verdict, "why": self.why}


@dataclass(frozen=True)
class Report:
    kernel: str
    libseccomp_version: str
    libseccomp_api: int | None
    libseccomp_path: str | None
    unknown: Mapping[str, tuple[str, ...]]  # arch -> names this kernel has that it cannot name
    runtimes: tuple[RuntimeReport, ...]
    cgroup: str
    hook: Mapping[str, object]
    wrapper: Mapping[str, object]
    profile: Mapping[str, object] | None = field(default=None)

    def as_json(self) -> dict:
        names = sorted({n for ns in self.unknown.values() for n in ns})
        out = {"kernel": self.kernel,
               "libseccomp": {"version": self.libseccomp_version, "api": self.libseccomp_api,
                              "path": self.libseccomp_path, "unknown": names,
                              "unknown_by_arch": {a: list(n) for a, n in self.unknown.items()}},
               "runtimes": [r.as_json() for r in self.runtimes],
               "cgroup": self.cgroup, "hook": dict(self.hook), "wrapper": dict(self.wrapper)}
        if self.profile is not None:
            out["profile"] = dict(self.profile)
        return out


# --- the kernel, and the libseccomp ocishim loads -----------------------------------------

def kernel_version(release: str | None = None) -> tuple[int, int]:
    """(major, minor) of the running kernel, from uname's release string."""
    m = re.match(r"(\d+)\.(\d+)", release or os.uname().release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def native_arches() -> tuple[Arch, ...]:
    """The arches a filter on this host carries: the native one and its compat ABIs."""
    native = libseccomp.native()
    return tuple(BY_NAME[a] for a in FAMILIES.get(native.name, (native.name,)) if a in BY_NAME)


def kernel_names(arch: Arch, kernel: tuple[int, int]) -> dict[str, int]:
    """The names the table says a kernel of this version has on arch."""
    out = {}
    for name, nr in syscalls.names(arch.name).items():
        since, until = syscalls.since(arch.name, nr), syscalls.until(arch.name, nr)
        if since is not None and since <= kernel and (until is None or until > kernel):
            out[name] = nr
    return out


def unknown_here(kernel: tuple[int, int]) -> dict[str, tuple[str, ...]]:
    """Per native arch, the names the running kernel has that ocishim's libseccomp cannot name."""
    out = {}
    for arch in native_arches():
        if arch.name in syscalls.arches() and arch in libseccomp.supported_arches():
            out[arch.name] = tuple(sorted(n for n in kernel_names(arch, kernel)
                                          if not libseccomp.knows(arch, n)))
    return out


def _api_level() -> int | None:
    import ctypes

    from .libseccomp import _lib

    try:
        fn = _lib.seccomp_api_get
    except AttributeError:
        return None
    fn.restype = ctypes.c_uint
    fn.argtypes = ()
    return int(fn())


# --- runtimes: read from their binaries ---------------------------------------------------

def _needed(path: str) -> tuple[list[str], list[str]]:
    """DT_NEEDED and DT_RUNPATH/RPATH of an ELF file (empty for a static binary)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    needed: list[str] = []
    runpath: list[str] = []
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            for section in elf.iter_sections():
                if isinstance(section, DynamicSection):
                    for tag in section.iter_tags():
                        if tag.entry.d_tag == "DT_NEEDED":
                            needed.append(tag.needed)
                        elif tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH"):
                            value = getattr(tag, "runpath", None) or getattr(tag, "rpath", "")
                            runpath += [p for p in value.split(":") if p]
    except (OSError, ELFError):
        return [], []
    return needed, runpath


def _ldconfig_paths() -> dict[str, str]:
    """soname -> path from the loader's cache (ldconfig -p), native entries only."""
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    try:
        out = subprocess.run([ldconfig, "-p"], capture_output=True, text=True,
                             timeout=COMMAND_TIMEOUT).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    paths: dict[str, str] = {}
    want = {"x86_64": "x86-64", "aarch64": "AArch64"}.get(os.uname().machine)
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if m and (want is None or want in m.group(2)):
            paths.setdefault(m.group(1), m.group(3))
    return paths


def find_library(soname: str, runpath: Sequence[str] = ()) -> str | None:
    """Where the dynamic loader would find soname: RUNPATH, its cache, the usual dirs."""
    for directory in runpath:
        if os.path.isfile(os.path.join(directory, soname)):
            return os.path.join(directory, soname)
    cached = _ldconfig_paths().get(soname)
    if cached and os.path.isfile(cached):
        return cached
    for directory in LIBRARY_DIRS:
        if os.path.isfile(os.path.join(directory, soname)):
            return os.path.join(directory, soname)
    return None


def _contains(path: str, needles: Sequence[bytes]) -> dict[bytes, bool]:
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return {n: m.find(n) >= 0 for n in needles}
    except (OSError, ValueError):
        return {n: False for n in needles}


# Run in a child: load one libseccomp by path and answer for it. A second libseccomp in
# this process would share the soname of the first and never be loaded.
_ASK_LIBRARY = r"""
import ctypes, json, sys
query = json.load(sys.stdin)
lib = ctypes.CDLL(query["path"])
class V(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]
lib.seccomp_version.restype = ctypes.POINTER(V)
lib.seccomp_syscall_resolve_name_arch.argtypes = (ctypes.c_uint32, ctypes.c_char_p)
lib.seccomp_syscall_resolve_name_arch.restype = ctypes.c_int
v = lib.seccomp_version().contents
out = {"version": f"{v.major}.{v.minor}.{v.micro}", "known": {}}
for arch, (token, names) in query["arches"].items():
    out["known"][arch] = {n: lib.seccomp_syscall_resolve_name_arch(token, n.encode()) for n in names}
json.dump(out, sys.stdout)
"""


def ask_library(path: str, kernel: tuple[int, int]) -> tuple[str | None, dict[str, dict[str, int]]]:
    """(version, arch -> {name: nr it gives}) of the libseccomp at path, for every name of
    the table on the native arches."""
    query = {"path": path, "arches": {a.name: (a.token, sorted(syscalls.names(a.name)))
                                      for a in native_arches() if a.name in syscalls.arches()}}
    try:
        proc = subprocess.run([sys.executable, "-c", _ASK_LIBRARY], input=json.dumps(query),
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        answer = json.loads(proc.stdout) if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        answer = None
    if not isinstance(answer, dict):
        return None, {}
    return answer.get("version"), answer.get("known", {})


def _runtime_version(path: str) -> tuple[str | None, str]:
    """The version the runtime states, and its whole --version text."""
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None, ""
    m = re.search(r"version\s+(\S+)", proc.stdout)
    return (m.group(1) if m else None), proc.stdout


def runtime_libseccomp(path: str) -> RuntimeLibseccomp:
    """Which libseccomp the binary at path uses: the one it links, or a copy inside it."""
    needed, runpath = _needed(path)
    for soname in needed:
        if soname.startswith("libseccomp.so"):
            lib = find_library(soname, runpath)
            real = os.path.realpath(lib) if lib else None
            return RuntimeLibseccomp("linked", real, None)
    if any(_contains(path, EMBEDDED_MARKERS[:2]).values()):
        return RuntimeLibseccomp("embedded", None, None)
    return RuntimeLibseccomp(None, None, None)


def runtime_report(name: str, path: str, kernel: tuple[int, int]) -> RuntimeReport:
    version, text = _runtime_version(path)
    lib = runtime_libseccomp(path)
    annotation = _contains(path, (BPF_ANNOTATION,))[BPF_ANNOTATION]
    known: dict[str, dict[str, int]] = {}
    if lib.path:
        lib_version, known = ask_library(lib.path, kernel)
        lib = RuntimeLibseccomp(lib.how, lib.path, lib_version)
    elif lib.how == "embedded":
        # A static build answers for its own copy only when run: its --version says it.
        m = re.search(r"libseccomp:\s*(\S+)", text)
        lib = RuntimeLibseccomp(lib.how, None, m.group(1) if m else None)
    max_nr: dict[str, int] = {}
    unknown: dict[str, tuple[str, ...]] = {}
    for arch in native_arches():
        answers = known.get(arch.name)
        if not answers:
            continue
        # ARM's private calls (0xf0000 up) are left out, as runc leaves them out of its maximum.
        private = arch.name == "arm"
        numbers = [nr for nr in answers.values() if nr >= 0 and not (private and nr >= 0xF0000)]
        if numbers:
            max_nr[arch.name] = max(numbers)
        # -1 is "unknown"; other negative numbers are libseccomp's pseudo numbers for
        # names it knows and routes elsewhere (socketcall, ipc).
        unknown[arch.name] = tuple(sorted(n for n in kernel_names(arch, kernel) if answers.get(n, -1) == -1))
    verdict, why = _verdict(name, lib, annotation, max_nr, unknown)
    return RuntimeReport(name, path, version, lib, annotation, max_nr, unknown, verdict, why)


def _verdict(name: str, lib: RuntimeLibseccomp, annotation: bool, max_nr: Mapping[str, int],
             unknown: Mapping[str, tuple[str, ...]]) -> tuple[str, str]:
    """exact: the runtime loads ocishim's program as it is; approximate: it gets the JSON
    rewrite, and says what that loses; broken: no seccomp at all."""
    if lib.how is None:
        return "broken", "no libseccomp found in or linked by the binary: it cannot load any filter"
    if annotation:
        return "exact", "takes run.oci.seccomp_bpf_data: loads ocishim's program byte for byte"
    names = sorted({n for ns in unknown.values() for n in ns})
    version = lib.version or "of unknown version"
    lost = [f"gets the profile plus ocishim's ERRNO(ENOSYS) rule, compiled by its libseccomp {version}"]
    if names:
        lost.append(f"rules for {len(names)} syscall(s) this kernel has that it cannot name are dropped "
                    f"({', '.join(names)}): a profile allowing them gets the default errno, or ENOSYS "
                    "from runc's stub above " + ", ".join(f"{a} {_num(m)}" for a, m in max_nr.items()))
    lost.append("numbers without a name get ENOSYS only from runc's stub, above its libseccomp's highest "
                "number; for the exact filter hand over to crun (ocishim-runtime with "
                "OCISHIM_RUNTIME=crun)")
    return "approximate", "; ".join(lost)


def _num(nr: int) -> str:
    return f"{nr:#x}" if nr >= 0x10000 else str(nr)


def find_runtimes() -> list[tuple[str, str]]:
    out = []
    for name in RUNTIMES:
        path = shutil.which(name)
        if path:
            out.append((name, os.path.realpath(path)))
    return out


# --- cgroups, the hook and the wrapper ----------------------------------------------------

def _mounts(root: str = "/") -> dict[str, str]:
    """mount point -> file system type, from /proc/self/mountinfo."""
    out = {}
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) > 4 and right:
                    out[fields[4]] = right.split()[0]
    except OSError:
        pass
    return out


def cgroup_mode() -> str:
    """unified (cgroup v2 only), hybrid (v1 controllers and a v2 hierarchy), or legacy (v1)."""
    mounts = _mounts()
    top = mounts.get("/sys/fs/cgroup")
    if top == "cgroup2":
        return "unified"
    if mounts.get("/sys/fs/cgroup/unified") == "cgroup2":
        return "hybrid"
    if top is None:
        return "none"
    return "legacy"


def _read_toml(path: str) -> dict:
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, ValueError):
        return {}


def _strings(value: object) -> list[str]:
    """Every string inside a parsed TOML or JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def podman_hooks_dirs(root: str = "/") -> list[str]:
    """The hooks directories podman reads: hooks_dir of containers.conf, else its defaults."""
    dirs: list[str] = []
    files = [os.path.join(root, "usr/share/containers/containers.conf"),
             os.path.join(root, "etc/containers/containers.conf")]
    files += sorted(glob.glob(os.path.join(root, "etc/containers/containers.conf.d/*.conf")))
    for path in files:
        engine = _read_toml(path).get("engine", {})
        if isinstance(engine, dict) and isinstance(engine.get("hooks_dir"), list):
            dirs = [d for d in engine["hooks_dir"] if isinstance(d, str)]
    return dirs or ["/usr/share/containers/oci/hooks.d", "/etc/containers/oci/hooks.d"]


def hook_status(root: str = "/") -> dict[str, object]:
    """ocishim's precreate hook files, and whether one is in a directory podman reads."""
    wired_dirs = podman_hooks_dirs(root)
    candidates = set(wired_dirs) | {"/etc/ocishim/hooks.d"}
    found, wired = [], False
    for directory in sorted(candidates):
        for path in sorted(glob.glob(os.path.join(root, directory.lstrip("/"), "*.json"))):
            try:
                with open(path, encoding="utf-8") as f:
                    hook = json.load(f)
            except (OSError, ValueError):
                continue
            spec = hook.get("hook") if isinstance(hook, dict) else None
            if isinstance(spec, dict) and "ocishim" in os.path.basename(str(spec.get("path", ""))) \
                    and "precreate" in (hook.get("stages") or []):
                found.append(path)
                wired |= directory in wired_dirs
    return {"installed": found, "wired": wired, "podman_hooks_dirs": wired_dirs}


def wrapper_status(root: str = "/") -> dict[str, object]:
    """Where ocishim-runtime is, and which engine configurations name it."""
    def names_wrapper(values: list[str]) -> bool:
        return any(os.path.basename(v) == "ocishim-runtime" for v in values)

    containerd = names_wrapper(_strings(_read_toml(os.path.join(root, "etc/containerd/config.toml"))))
    try:
        with open(os.path.join(root, "etc/docker/daemon.json"), encoding="utf-8") as f:
            docker = names_wrapper(_strings(json.load(f).get("runtimes", {})))
    except (OSError, ValueError, AttributeError):
        docker = False
    crio_files = [os.path.join(root, "etc/crio/crio.conf")] + \
        sorted(glob.glob(os.path.join(root, "etc/crio/crio.conf.d/*.conf")))
    crio = any(names_wrapper(_strings(_read_toml(p))) for p in crio_files)
    return {"path": shutil.which("ocishim-runtime"), "containerd": containerd, "docker": docker,
            "crio": crio}


# --- the whole report ---------------------------------------------------------------------

def profile_unknown(path: str) -> dict[str, object]:
    """The names a profile lists that ocishim's libseccomp cannot name on any native arch."""
    from .profile import load

    loaded = load(path)
    names = sorted({n for rule in (loaded.profile.syscalls if loaded.profile else ()) for n in rule.names})
    if loaded.kind == "docker" and loaded.config is None:
        with open(path, "rb") as f:  # every rule of the file, whatever includes/excludes say
            raw = json.load(f)
        names = sorted({n for rule in raw.get("syscalls", []) for n in rule.get("names", [])
                        if isinstance(n, str)})
    arches = [a for a in native_arches() if a in libseccomp.supported_arches()]
    unknown = [n for n in names if not any(libseccomp.knows(a, n) for a in arches)]
    return {"path": path, "names": len(names), "unknown": unknown}


def diagnose(root: str = "/", profile: str | None = None) -> Report:
    kernel = kernel_version()
    return Report(
        kernel=os.uname().release,
        libseccomp_version=".".join(map(str, libseccomp.version())),
        libseccomp_api=_api_level(),
        libseccomp_path=_loaded_library(),
        unknown=unknown_here(kernel),
        runtimes=tuple(runtime_report(n, p, kernel) for n, p in find_runtimes()),
        cgroup=cgroup_mode(),
        hook=hook_status(root),
        wrapper=wrapper_status(root),
        profile=profile_unknown(profile) if profile else None,
    )


def _loaded_library() -> str | None:
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and "/libseccomp.so" in parts[5]:
                    return os.path.realpath(parts[5].strip())
    except OSError:
        pass
    return None


def report_text(report: Report) -> str:
    lines = [f"kernel {report.kernel}"]
    api = f", API level {report.libseccomp_api}" if report.libseccomp_api is not None else ""
    lines.append(f"libseccomp {report.libseccomp_version}{api} ({report.libseccomp_path or 'path unknown'}), "
                 "the one ocishim loads")
    for arch, names in report.unknown.items():
        lines.append(f"  {arch}: cannot name {len(names)} syscall(s) this kernel has"
                     + (f": {' '.join(names)}" if names else ""))
    if report.profile is not None:
        p = report.profile
        lines.append(f"  {p['path']}: {len(p['unknown'])} of its {p['names']} names unknown to it"
                     + (f": {' '.join(p['unknown'])}" if p["unknown"] else ""))
    if not report.runtimes:
        lines.append("no runtime found (runc, crun) in PATH")
    for r in report.runtimes:
        lines.append(f"{r.name} {r.version or '(version unknown)'} ({r.path})")
        lib = r.libseccomp
        where = {"linked": f"linked: {lib.path}", "embedded": "embedded in the binary"}.get(lib.how or "", "none")
        lines.append(f"  libseccomp {lib.version or '?'} ({where})")
        lines.append(f"  takes crun's BPF annotation (run.oci.seccomp_bpf_data): {'yes' if r.bpf_annotation else 'no'}")
        if r.max_nr:
            above = "" if r.bpf_annotation else " (runc's stub answers ENOSYS above it)"
            lines.append(f"  highest syscall number its libseccomp names{above}: "
                         + ", ".join(f"{a} {_num(m)}" for a, m in r.max_nr.items()))
        lines.append(f"  verdict: {r.verdict}: {r.why}")
    lines.append(f"cgroup {report.cgroup}")
    hook = report.hook
    lines.append("podman hook: " + (", ".join(hook["installed"]) if hook["installed"] else "not installed")
                 + ("; wired into podman" if hook["wired"] else
                    f"; not in podman's hooks directories ({', '.join(hook['podman_hooks_dirs'])})"))
    w = report.wrapper
    lines.append(f"wrapper ocishim-runtime: {w['path'] or 'not in PATH'}; "
                 + ", ".join(f"{e} {'wired' if w[e] else 'not wired'}" for e in ("containerd", "docker", "crio")))
    return "\n".join(lines) + "\n"


def cmd_doctor(args) -> int:
    """`ocishim doctor [--json] [--profile FILE]`."""
    report = diagnose(profile=args.profile)
    if args.json:
        json.dump(report.as_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(report_text(report))
    return 0
