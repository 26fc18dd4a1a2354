"""The compiled-filter cache: a rewrite done once, applied again without libseccomp.

The hook, the wrapper and `ocishim run` spend most of a container start compiling the
profile with libseccomp, checking and patching it. The same profile comes back with
every container, so what a rewrite adds to a config (the rewritten linux.seccomp and
crun's run.oci.seccomp_bpf_data) is kept in a root-only directory and applied again
when every input is the same:
- the profile: the canonical text of linux.seccomp, arches included;
- the administrator's settings and the container's choice (mode, emulate-kernel,
  unknown-syscall), both: an entry holds the outcome of rule 10's comparison of the
  two, so it is only ever served for that very pair;
- what the program depends on besides: ocishim's version and a fingerprint of its
  code, the syscall table, the libseccomp version and its native arch.
The key is the SHA-256 of all of that. An entry repeats its key and carries a
checksum of its payload and of the program; anything that does not match (a
truncated or flipped file, one copied under another key's name, one not written by
this user or writable by others) is never loaded: the filter is built again and the
entry replaced. A directory that others could write is not used at all.

Refusals are not cached: they are rare, and each one is computed again in full.
On a hit no libseccomp binding, compiler or patcher is imported: the key needs only
ctypes (libseccomp's version and native arch) and the builtin SHA-256.
"""

from __future__ import annotations

import os
import stat

from .record import Record  # not dataclasses or NamedTuple: their imports cost a hit 5-15 ms

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:  # the builtin SHA-256: hashlib's import initialises OpenSSL, 3-20 ms of every start
    from _sha256 import sha256
except ImportError:  # another Python's name for it, or none
    try:
        from _sha2 import sha256  # type: ignore[no-redef]
    except ImportError:
        from hashlib import sha256  # type: ignore[no-redef]

DEFAULT_DIR = "/var/cache/ocishim"
ENV = "OCISHIM_CACHE"  # a directory or "off"; over the settings' "cache", like OCISHIM_CONFIG
OFF = "off"
MAGIC = b"ocishim-filter-cache 1\n"
MAX_BYTES = 64 << 20  # the directory's bound; the oldest entries go first
MAX_ENTRY_BYTES = 8 << 20  # far above a 4096-instruction program with its profile
BPF_ANNOTATION = "run.oci.seccomp_bpf_data"  # the same name as integrations.config's
LIBSECCOMP_SONAME = "libseccomp.so.2"
MINIMUM_LIBSECCOMP = (2, 5, 0)  # libseccomp.MINIMUM (a test checks that they agree)
_HEX = frozenset("0123456789abcdef")
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


# ------------------------------------------------------------------ what is cached

class Filter(Record):
    """What a rewrite adds to a config, and what the integrations log about it."""

    __slots__ = ("seccomp", "annotation", "mode", "emulate", "instructions", "enosys_names",
                 "warnings", "notes")
    _defaults = {"warnings": (), "notes": ()}
    seccomp: str  # the rewritten linux.seccomp, as jsontext.dumps writes it
    annotation: str  # run.oci.seccomp_bpf_data: the patched program, base64
    mode: str
    emulate: tuple[int, int] | None
    instructions: int
    enosys_names: int  # names in the portable ERRNO(ENOSYS) rule
    warnings: tuple[str, ...]
    notes: tuple[str, ...]  # the check's repairs and notices (Patched.notes)

    def to_json(self) -> dict[str, Any]:
        return {"seccomp": self.seccomp, "annotation": self.annotation, "mode": self.mode,
                "emulate": list(self.emulate) if self.emulate else None,
                "instructions": self.instructions, "enosys_names": self.enosys_names,
                "warnings": list(self.warnings), "notes": list(self.notes)}

    @classmethod
    def from_json(cls, value: Any) -> "Filter | None":
        """The Filter an entry's payload describes; None for any other shape."""
        if not isinstance(value, dict) or set(value) != set(_FIELDS):
            return None
        for name, kind in _FIELDS.items():
            if not isinstance(value[name], kind) or isinstance(value[name], bool):
                return None
        emulate = value["emulate"]
        if emulate is not None and not (len(emulate) == 2 and all(type(v) is int for v in emulate)):
            return None
        texts = value["warnings"] + value["notes"]
        if not all(isinstance(t, str) for t in texts):
            return None
        return cls(value["seccomp"], value["annotation"], value["mode"],
                   tuple(emulate) if emulate else None, value["instructions"],
                   value["enosys_names"], tuple(value["warnings"]), tuple(value["notes"]))


_FIELDS: dict[str, Any] = {"seccomp": str, "annotation": str, "mode": str,
                           "emulate": (list, type(None)), "instructions": int,
                           "enosys_names": int, "warnings": list, "notes": list}


# ------------------------------------------------------------------ the key

class Host(Record):
    """What a program depends on besides the profile and the settings."""

    __slots__ = ("ocishim", "code", "table", "libseccomp", "native")
    ocishim: str
    code: str  # fingerprint of the package's source files
    table: str  # the syscall table module's identity (_file_identity)
    libseccomp: str
    native: int  # libseccomp's native arch token (AUDIT_ARCH_*)


class Request(Record):
    """One rewrite: the profile, the settings and the container's choice (rule 10)."""

    __slots__ = ("profile", "settings", "chosen")
    profile: str  # SHA-256 of the canonical linux.seccomp text
    settings: tuple[str, str | None, bool]  # mode, emulate, unknown-syscall=fail
    chosen: tuple[str, str | None, bool] | None  # the annotations' choice; None: ocishim run


def key(request: Request, host: Host) -> str:
    """The entry's name: SHA-256 over every input of the rewrite."""
    material = {"format": MAGIC.decode().strip(), "profile": request.profile,
                "settings": list(request.settings),
                "chosen": list(request.chosen) if request.chosen else None,
                "ocishim": host.ocishim, "code": host.code, "table": host.table,
                "libseccomp": host.libseccomp, "native": host.native}
    from .profile.jsontext import plain_dumps

    return sha256(plain_dumps(material).encode()).hexdigest()


_host: Host | None = None
_facts: tuple[str, int] | None = None


def _libseccomp_facts() -> tuple[str, int]:
    """The version ("2.5.4") and native arch token (AUDIT_ARCH_*) of the libseccomp a
    binding would load, asked of the library itself; computed once.

    By _ctypes, the C module under ctypes: the ctypes package's own import (its ~30
    type classes) costs a start 4-5 ms, and only these two calls are needed here.
    LIBSECCOMP_SONAME is the name pyseccomp dlopens and the Cython binding links
    against; ld.so resolves it the same way for both, LD_LIBRARY_PATH included.
    Raises OSError when the library or a function cannot be found.
    """
    global _facts
    if _facts is None:
        import _ctypes

        class UInt(_ctypes._SimpleCData):
            _type_ = "I"  # unsigned int

        class Version(_ctypes.Array):  # struct scmp_version: three unsigned ints
            _type_ = UInt
            _length_ = 3

        class VersionPointer(_ctypes._Pointer):
            _type_ = Version

        class VersionFunction(_ctypes.CFuncPtr):  # const struct scmp_version *(void)
            _flags_ = _ctypes.FUNCFLAG_CDECL
            _restype_ = VersionPointer

        class UIntFunction(_ctypes.CFuncPtr):  # uint32_t (void)
            _flags_ = _ctypes.FUNCFLAG_CDECL
            _restype_ = UInt

        library = _ctypes.dlopen(LIBSECCOMP_SONAME, os.RTLD_NOW | os.RTLD_LOCAL)
        version = VersionFunction(_ctypes.dlsym(library, "seccomp_version"))().contents
        native = UIntFunction(_ctypes.dlsym(library, "seccomp_arch_native"))()
        _facts = ".".join(str(v) for v in version), native
    return _facts


def libseccomp_version() -> str:
    """The version of the libseccomp a binding would load ("2.5.4")."""
    return _libseccomp_facts()[0]


def host() -> Host:
    """This process's Host, computed once: libseccomp by _ctypes, not by its binding.

    Raises OSError when libseccomp cannot be loaded or lacks a function.
    """
    global _host
    if _host is None:
        from . import __version__

        version, native = _libseccomp_facts()
        _host = Host(__version__, code_fingerprint(),
                     _file_identity(os.path.join(_PACKAGE, "syscalls", "_data.py")), version, native)
    return _host


def require_libseccomp() -> None:
    """libseccomp.require() without importing a binding: the same check and message."""
    from .errors import SystemFailure

    text = libseccomp_version()
    if tuple(int(v) for v in text.split(".")) < MINIMUM_LIBSECCOMP:
        raise SystemFailure("libseccomp", f"found version {text} "
                                          f"({LIBSECCOMP_SONAME}); ocishim needs "
                                          f"{'.'.join(map(str, MINIMUM_LIBSECCOMP))} or newer")


def _file_identity(path: str) -> str:
    """What changes whenever the file's content can have: size, mtime, ctime, inode.

    Not a SHA-256 of the content: the syscall table is 250 KB, and the builtin SHA-256
    took a fifth of a cache hit's instructions over it. The kernel sets ctime on every
    change (no one can set it back), and a file written anew has another inode.
    """
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_dev}:{st.st_ino}"


def code_fingerprint() -> str:
    """The package's .py files by name, size and modification time.

    ocishim's version alone does not change with every edit of a checkout; a new
    install or edit changes a file's size or time, and so every key.
    """
    lines: list[str] = []
    _fingerprint_lines(_PACKAGE, "", lines)
    return sha256("".join(lines).encode()).hexdigest()


def _fingerprint_lines(directory: str, relative: str, lines: list[str]) -> None:
    # Names in sorted order, each directory's files before its subdirectories, as
    # os.walk gives them (scandir directly: walk's generators cost a start ~1 ms).
    with os.scandir(directory) as it:
        entries = sorted(it, key=lambda e: e.name)
    subdirectories = []
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):  # os.walk does not enter linked ones either
            if entry.name != "__pycache__":
                subdirectories.append(entry)
        elif entry.name.endswith(".py"):
            st = entry.stat()
            lines.append(f"{relative}{entry.name}\0{st.st_size}\0{st.st_mtime_ns}\n")
    for entry in subdirectories:
        _fingerprint_lines(entry.path, f"{relative}{entry.name}/", lines)


# ------------------------------------------------------------------ the directory

class Cache(Record):
    """A cache directory that passed the checks of `open_cache`."""

    __slots__ = ("directory", "max_bytes")
    _defaults = {"max_bytes": MAX_BYTES}
    directory: str
    max_bytes: int

    def path(self, name: str) -> str:  # noqa: D102
        return os.path.join(self.directory, name)


def location(settings: Any = None) -> str:
    """The cache directory or "off": $OCISHIM_CACHE, else the settings' "cache".

    load_settings gives the system's settings DEFAULT_DIR unless they say otherwise;
    Settings made in Python without a cache get none.
    """
    return os.environ.get(ENV) or getattr(settings, "cache", None) or OFF


def open_cache(where: str, create: bool = True) -> tuple[Cache | None, str | None]:
    """The cache at `where`, or None with the reason it is not used (None: turned off).

    The directory must be a real directory owned by this user (root) with no access
    for anyone else, on a path whose every directory only root can change (as for the
    settings file): anyone else who could write an entry could choose the filter.
    A directory the settings name is created; the default one is used only where it
    exists (the package installs it), so that a tool or test run with the defaults
    leaves nothing behind in /var/cache.
    """
    if where == OFF:
        return None, None
    default = os.path.normpath(where) == DEFAULT_DIR
    if not os.path.isabs(where):
        return None, f"cache directory {where!r}: not an absolute path; cache not used"
    where = os.path.normpath(where)
    # The parents as the kernel resolves them: a symlink on the way is judged by where it
    # leads, every directory up to there included.
    real = os.path.join(os.path.realpath(os.path.dirname(where)), os.path.basename(where))
    problem = _untrusted_parents(real)
    if problem:
        return None, f"cache directory {where}: {problem}; cache not used"
    where = real
    try:
        st = os.lstat(where)
    except FileNotFoundError:
        if default:
            return None, None  # not installed: no cache, and nothing to warn about
        if not create:
            return None, f"cache directory {where}: does not exist"
        try:
            os.mkdir(where, 0o700)
            st = os.lstat(where)
        except OSError as exc:
            return None, f"cache directory {where}: cannot create: {exc.strerror}; cache not used"
    if not stat.S_ISDIR(st.st_mode):
        return None, f"cache directory {where}: not a directory; cache not used"
    if st.st_uid != os.geteuid():
        return None, f"cache directory {where}: owned by uid {st.st_uid}; cache not used"
    if st.st_mode & 0o077:
        return None, (f"cache directory {where}: mode {stat.S_IMODE(st.st_mode):04o}, "
                      "must be 0700; cache not used")
    return Cache(where, MAX_BYTES), None


def _untrusted_parents(path: str) -> str | None:
    """Why a directory on the way to path could be changed by another user, or None."""
    current = "/"
    for part in os.path.dirname(path).split("/"):
        current = os.path.join(current, part) if part else current
        try:
            st = os.stat(current)  # symlinks on the way resolve as the kernel does
        except OSError as exc:
            return f"{current}: {exc.strerror}"
        if st.st_uid not in (0, os.geteuid()):
            return f"{current} is owned by uid {st.st_uid}"
        sticky_root = st.st_mode & stat.S_ISVTX and st.st_uid == 0
        if st.st_mode & 0o022 and not sticky_root:
            return f"{current} is writable by group or others"
    return None


# ------------------------------------------------------------------ entries

def encode_entry(name: str, value: Filter) -> bytes:
    """An entry's bytes: magic, key, payload checksum, program checksum, payload."""
    from .profile.jsontext import plain_dumps

    payload = plain_dumps(value.to_json()).encode()
    program = _b64decode(value.annotation)
    return b"".join((MAGIC, name.encode(), b"\n", sha256(payload).hexdigest().encode(),
                     b"\n", sha256(program).hexdigest().encode(), b"\n", payload))


def _b64decode(text: str) -> bytes:
    """base64.b64decode(text, validate=True) without the base64 module (and its re):
    binascii's strict mode refuses whatever is not the alphabet and its padding."""
    import binascii

    return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)


def decode_entry(name: str, data: bytes) -> Filter | None:
    """The Filter in an entry, or None unless every check passes."""
    import binascii

    from .profile.jsontext import loads

    if not data.startswith(MAGIC):
        return None
    parts = data[len(MAGIC):].split(b"\n", 3)
    if len(parts) != 4 or parts[0] != name.encode():
        return None
    payload_sum, program_sum, payload = parts[1], parts[2], parts[3]
    if sha256(payload).hexdigest().encode() != payload_sum:
        return None
    try:
        value = Filter.from_json(loads(payload))
        program = _b64decode(value.annotation) if value else b""
    except (ValueError, RecursionError, binascii.Error):
        return None
    if value is None or sha256(program).hexdigest().encode() != program_sum:
        return None
    if not program or len(program) != 8 * value.instructions:
        return None
    return value


def load(cache: Cache, name: str) -> Filter | None:
    """The entry `name` if it is ours and intact; None otherwise (then it is rebuilt)."""
    try:
        fd = os.open(cache.path(name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022 \
                or st.st_size > MAX_ENTRY_BYTES:
            return None
        data = _read_all(fd, st.st_size)
    finally:
        os.close(fd)
    value = decode_entry(name, data)
    if value is not None:
        try:  # most recently used: eviction takes the oldest
            os.utime(cache.path(name))
        except OSError:
            pass
    return value


def _read_all(fd: int, size: int) -> bytes:
    chunks = []
    left = size + 1  # one past: a file that grew is caught by the checksum
    while left > 0:
        chunk = os.read(fd, left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def store(cache: Cache, name: str, value: Filter) -> None:
    """Write the entry atomically (files.write_atomically), then keep the directory in bounds."""
    from .files import write_atomically

    data = encode_entry(name, value)
    if len(data) > MAX_ENTRY_BYTES:
        return
    try:
        # Whatever was there (damaged, another owner's, a symlink) goes, not its mode:
        # the writer keeps an old file's permission bits.
        os.unlink(cache.path(name))
    except FileNotFoundError:
        pass
    write_atomically(cache.path(name), data)
    evict(cache)


def _entries(cache: Cache) -> list[tuple[int, int, str]]:
    """(mtime, size, name) of every entry, oldest first."""
    out = []
    with os.scandir(cache.directory) as it:
        for entry in it:
            if len(entry.name) == 64 and _HEX.issuperset(entry.name):
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                out.append((st.st_mtime_ns, st.st_size, entry.name))
    return sorted(out)


def evict(cache: Cache) -> list[str]:
    """Remove the oldest entries until the directory holds at most max_bytes; returns them."""
    entries = _entries(cache)
    total = sum(size for _, size, _ in entries)
    removed = []
    for _, size, name in entries:
        if total <= cache.max_bytes:
            break
        try:
            os.unlink(cache.path(name))
        except FileNotFoundError:
            pass
        total -= size
        removed.append(name)
    return removed


class Stats(Record):
    """What `ocishim cache stats` prints."""

    __slots__ = ("directory", "state", "entries", "bytes", "max_bytes")
    _defaults = {"entries": 0, "bytes": 0, "max_bytes": MAX_BYTES}
    directory: str
    state: str  # "ok", "off", or why the directory is not used
    entries: int
    bytes: int
    max_bytes: int


def stats(where: str) -> Stats:
    """What `ocishim cache stats` prints."""
    cache, problem = open_cache(where, create=False)
    if cache is None:
        if problem is None and where != OFF:
            problem = f"off: {where} does not exist (install -d -m 0700 {where} turns the cache on)"
        return Stats(where, problem or OFF)
    entries = _entries(cache)
    return Stats(where, "ok", len(entries), sum(size for _, size, _ in entries), cache.max_bytes)


def clear(where: str) -> int:
    """Remove every entry (and nothing else); returns how many.

    Raises SystemFailure for a directory the cache would not use (it is not ours to empty).
    """
    cache, problem = open_cache(where, create=False)
    if cache is None:
        if problem and not problem.endswith("does not exist"):
            from .errors import SystemFailure

            raise SystemFailure("cache", problem.replace("; cache not used", ""))
        return 0
    count = 0
    for _, _, name in _entries(cache):
        try:
            os.unlink(cache.path(name))
            count += 1
        except FileNotFoundError:
            pass
    return count


# ------------------------------------------------------------------ the rewrite

class Outcome(Record):
    """A rewritten config (None: no linux.seccomp, nothing to do) and what was added."""

    __slots__ = ("config", "filter", "cached")
    _defaults = {"cached": False}
    config: dict[str, Any] | None
    filter: Filter | None
    cached: bool


def _settings_tuple(mode: Any, emulate: Any, unknown_fail: Any) -> tuple[str, str | None, bool]:
    return (str(mode), ".".join(map(str, emulate)) if emulate else None, bool(unknown_fail))


def rewrite_config(config: Any, source: str, settings: Any, cache: Cache | None,
                   container: bool = True) -> Outcome:
    """integrations.config's rewrite_for_container (container=True) or rewrite (`ocishim
    run`: the settings are the command line's), through the cache.

    The decoded config is changed in place and returned. On a hit only what lies outside
    the cached linux.seccomp is checked again (rule 11's field names); the seccomp text
    itself is part of the key and was checked when the entry was built.
    """
    seccomp = _seccomp_of(config)
    if cache is None or seccomp is None or (container and _audited(settings, config)):
        return _build(config, source, settings, container)
    from .profile import jsontext

    chosen = None
    if container:
        from .integrations.settings import for_container

        picked, _ = for_container(settings, config)  # bad annotation values fail here, as cold
        chosen = _settings_tuple(picked.mode, picked.emulate, picked.unknown_fail)
    request = Request(sha256(jsontext.hash_text(seccomp).encode()).hexdigest(),
                      _settings_tuple(settings.mode, settings.emulate, settings.unknown_fail),
                      chosen)
    try:
        name = key(request, host())
    except (OSError, AttributeError):  # libseccomp unloadable: the build says so, plainly
        return _build(config, source, settings, container)
    found = load(cache, name)
    if found is not None:
        return Outcome(_apply(config, found, source), found, cached=True)
    outcome = _build(config, source, settings, container)
    if outcome.filter is not None:
        from .errors import OcishimError

        try:
            store(cache, name, outcome.filter)
        except (OSError, OcishimError):
            pass  # a full disk or a directory in the entry's place: the next start compiles
    return outcome


def config_text(outcome: Outcome) -> str:
    """jsontext.dumps(outcome.config), the rewritten linux.seccomp taken from the filter's
    text (already written once, on a hit when the entry was made) instead of again."""
    from .profile import jsontext

    seccomp = outcome.config["linux"]["seccomp"]
    return jsontext.dumps(outcome.config, {id(seccomp): outcome.filter.seccomp})


def _audited(settings: Any, config: Any) -> bool:
    """Audit mode (ocishim/audit.py) is built fresh and never stored: the audited filter
    carries the agent's socket, and the key does not hold the audit choice."""
    from .integrations.settings import audit_wanted

    return audit_wanted(settings, config)


def _seccomp_of(config: Any) -> Any:
    linux = config.get("linux") if isinstance(config, dict) else None
    return linux.get("seccomp") if isinstance(linux, dict) else None


def _apply(config: dict[str, Any], value: Filter, source: str) -> dict[str, Any]:
    """The cold rewrite's result, from the entry: the same checks, then the same two changes."""
    from .errors import ProfileError
    from .profile import document, spec_fields

    document.check_fields(config, spec_fields.BY_KIND["config"])
    annotations = config.get("annotations")
    if annotations is None:
        annotations = config["annotations"] = {}
    if not isinstance(annotations, dict):
        raise ProfileError("annotations", "must be an object of strings")
    config["linux"]["seccomp"] = document.decode(value.seccomp, source)
    annotations[BPF_ANNOTATION] = value.annotation
    return config


def _build(config: Any, source: str, settings: Any, container: bool) -> Outcome:
    """The rewrite without the cache, and the Filter it makes."""
    from .integrations.config import rewrite, rewrite_for_container
    from .profile import jsontext

    if container:
        result = rewrite_for_container(config, settings, source)
    else:
        result = rewrite(config, settings.mode, settings.emulate, source, settings.unknown_fail)
    if result.config is None:
        return Outcome(None, None)
    patched = result.patched
    value = Filter(jsontext.dumps(result.config["linux"]["seccomp"]),
                   result.config["annotations"][BPF_ANNOTATION], str(patched.mode),
                   tuple(patched.emulate) if patched.emulate else None, len(patched.program),
                   len(result.enosys_names), tuple(patched.compiled.warnings),
                   tuple(str(n) for n in getattr(patched, "notes", ())))
    return Outcome(result.config, value)
