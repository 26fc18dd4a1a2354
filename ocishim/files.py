"""The one writer for every file ocishim writes.

ocishim runs as root, often in directories that others may write (a bundle, a user's
`patch -o` target), so it never acts on a path twice: the target's directory is opened
once and every step names files relative to that descriptor; the temporary file is
created exclusively, under an unpredictable name, without following symlinks, and its
mode is set on the open descriptor. A crash leaves the old file or the new one, never a
mix; a temporary file left by a killed run is removed by the next one.

A FIFO, a character device or `-` (stdout) is written into rather than replaced, when
the caller allows it (`patch -o /dev/null`, `-o some.fifo`); a symlink, a directory, a
socket or a block device is refused with a message naming the path.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys

from .errors import UsageError

TEMP_MARK = ".ocishim-"
# Our temporaries: ".NAME.ocishim-" + 12 hex digits, or the decimal pid that versions
# before issue 8 used (their leftovers blocked a bundle for good inside a PID namespace).
_SUFFIX = r"(?:[0-9a-f]{12}|[0-9]+)"
# Created 0600 and widened only on the descriptor, once the data is complete.
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
NEW_FILE_MODE = 0o644  # what open() under the usual umask gives: readable by all


def temp_name(name: str) -> str:
    """A fresh temporary name beside name (in the same directory, so rename is atomic)."""
    # os.urandom, as secrets.token_hex reads it: importing secrets (hmac, OpenSSL) would
    # cost every build that writes a file 3-20 ms.
    return f".{name}{TEMP_MARK}{os.urandom(6).hex()}"


def is_temp_name(name: str, target: str) -> bool:
    """Whether name is one of our temporaries for target (a base name)."""
    import re  # here: the hook's start does not clean up temporaries

    return re.fullmatch(re.escape(f".{target}{TEMP_MARK}") + _SUFFIX, name) is not None


def write_atomically(path: str, data: bytes, *, streams: bool = False) -> None:
    """Replace path with data; with streams=True write into a FIFO, char device or `-`.

    A regular file is replaced: temp file beside it, fsync, rename, fsync the directory.
    The new file keeps the old one's permission bits (a new file gets 0644).
    Raises OSError (filename set) when the system fails, after removing the temp file,
    and UsageError naming the path for a target ocishim will not touch.
    """
    if path == "-" and streams:
        sys.stdout.buffer.write(data)  # through sys.stdout, so a redirection of it holds
        sys.stdout.flush()
        return
    directory, name = os.path.split(os.path.abspath(path))
    if not name:  # only "/" has no last component
        raise UsageError(path, "is a directory; name a file")
    dfd = os.open(directory or "/", _DIR_FLAGS)
    try:
        remove_stale_temporaries(dfd, name)
        try:
            st = os.lstat(name, dir_fd=dfd)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            if streams and (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
                _write_into(dfd, name, path, data)
                return
            raise UsageError(path, _refusal(st.st_mode))
        _replace(dfd, name, path, data, NEW_FILE_MODE if st is None else _kept_mode(st.st_mode))
    except OSError as exc:
        if exc.filename is None:
            exc.filename = path
        raise
    finally:
        os.close(dfd)


def _kept_mode(mode: int) -> int:
    # Permission bits only: a set-id or sticky bit on the old file must not pass to
    # bytes that root has just written.
    return stat.S_IMODE(mode) & 0o777


def _refusal(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return ("is a symbolic link; refusing to replace it or to follow it "
                "(name the file it points to)")
    if stat.S_ISDIR(mode):
        return "is a directory; name a file"
    if stat.S_ISSOCK(mode):
        return "is a socket; refusing to write to it"
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a character device"
        # Here something reads the file by its path later (a runtime, podman): bytes
        # pushed into a stream would not be what it reads.
        return f"is {kind}, not a regular file; refusing to write it here"
    return "is not a regular file; refusing to replace it"


def _replace(dfd: int, name: str, path: str, data: bytes, mode: int) -> None:
    fd, tmp = _create_temp(dfd, name)
    try:
        try:
            # Held until the rename: a concurrent run sees the temporary in use and
            # leaves it alone; a SIGKILL releases it, so the next run removes it.
            fcntl.flock(fd, fcntl.LOCK_EX)
            _write_all(fd, data, path)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except FileNotFoundError:
            pass
        raise
    os.fsync(dfd)


def _create_temp(dfd: int, name: str) -> tuple[int, str]:
    # 48 random bits: a collision means someone planted the name; pick another.
    for _ in range(100):
        tmp = temp_name(name)
        try:
            return os.open(tmp, _TEMP_FLAGS, 0o600, dir_fd=dfd), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name beside it")


def _write_into(dfd: int, name: str, path: str, data: bytes) -> None:
    # O_NONBLOCK: opening a FIFO with no reader fails with ENXIO at once instead of
    # waiting forever. No O_CREAT, no O_TRUNC: only what is there is written into.
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
    try:
        fd = os.open(name, flags, dir_fd=dfd)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OSError(errno.ENXIO, "a FIFO with no reader (refusing to wait for one)",
                          path) from None
        raise
    try:
        st = os.fstat(fd)
        if not (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
            # Swapped for another file since lstat: never write into that.
            raise UsageError(path, "changed while being opened; refusing to write into it")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        _write_all(fd, data, path)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes, path: str) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:
            raise OSError(errno.EIO, "write returned 0", path)
        view = view[written:]


def remove_stale_temporaries(dfd: int, name: str) -> list[str]:
    """Remove our temporaries for name left in the directory by killed runs; returns them.

    Only regular files of ours (the name pattern, our uid) that no live run holds
    locked; a symlink or anything else with such a name is left alone and not followed.
    """
    removed = []
    prefix = f".{name}{TEMP_MARK}"
    with os.scandir(dfd) as entries:
        candidates = [e.name for e in entries if e.name.startswith(prefix)]
    for candidate in candidates:
        if is_temp_name(candidate, name) and _remove_if_stale(dfd, candidate):
            removed.append(candidate)
    return removed


def _remove_if_stale(dfd: int, candidate: str) -> bool:
    """Unlink candidate if it is a regular file of ours that no live writer holds locked.

    A writer that has created its file but not yet locked it can lose it here; its
    rename then fails with ENOENT and it reports an error: never a wrong file.
    """
    try:
        st = os.lstat(candidate, dir_fd=dfd)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        return False
    try:
        # O_NONBLOCK|O_NOFOLLOW: a FIFO or symlink swapped in since lstat neither
        # blocks nor is followed; fstat below then sees it is not the same file.
        fd = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
                     | os.O_NOCTTY, dir_fd=dfd)
    except OSError:
        return False
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live run is writing it
        try:
            os.unlink(candidate, dir_fd=dfd)
        except FileNotFoundError:
            return False
        return True
    finally:
        os.close(fd)


# ---------------------------------------------------------------- reading trusted files

def read_trusted(path: str, what: str) -> bytes:
    """The bytes of a file root may act on (settings): refused unless only root can write it.

    Like sudo with sudoers and ssh with StrictModes: the file and every directory on
    the way to it, symlinks resolved as the kernel does, must be owned by root (or by
    the user running ocishim) and not writable by group or others. A root-owned sticky
    directory such as /tmp passes: others cannot replace root's entries in it.
    Raises FileNotFoundError for a missing file, UsageError naming what is wrong.
    """
    resolved = _resolve_checked(path, what)
    fd = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
                 | os.O_NOCTTY)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(path, f"refusing {what}: not a regular file")
        _refuse_untrusted(path, what, resolved, st)
        return f.read()


def _refuse_untrusted(path: str, what: str, where: str, st: os.stat_result) -> None:
    kind = "directory " if stat.S_ISDIR(st.st_mode) else ""
    if where == os.path.abspath(path):
        kind, where = "", "it"
    if st.st_uid not in (0, os.geteuid()):
        raise UsageError(path, f"refusing {what}: {kind}{where} is owned by uid {st.st_uid}, "
                               "not root")
    sticky_root_dir = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX and st.st_uid == 0
    if st.st_mode & 0o022 and not sticky_root_dir:
        raise UsageError(path, f"refusing {what}: {kind}{where} is writable by group or others "
                               f"(mode {stat.S_IMODE(st.st_mode):04o}; chmod go-w)")


def _resolve_checked(path: str, what: str) -> str:
    """path resolved component by component, each directory passed through checked."""
    parts = os.path.abspath(path).split("/")[1:]
    current = "/"
    _refuse_untrusted(path, what, "/", os.lstat("/"))
    links = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            current = os.path.dirname(current)
            continue
        step = os.path.join(current, part)
        st = os.lstat(step)
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 40:  # the kernel's limit (ELOOP)
                raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
            target = os.readlink(step)
            parts = target.split("/") + parts
            if target.startswith("/"):
                current = "/"
            continue
        if not parts:
            return step
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", step)
        _refuse_untrusted(path, what, step, st)
        current = step
    return current
