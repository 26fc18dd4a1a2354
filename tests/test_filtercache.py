"""The compiled-filter cache (ocishim/filtercache.py): a hit gives exactly the cold result,
and nothing but an intact entry of this user, for these very inputs, is ever loaded.

The oracle for "loaded" is a planted entry: a copy of a real entry whose program is a
one-instruction marker, checksummed again by this test from the entry format written
out below (not by the module). Served, the marker shows up in the hook's output; a
flipped key field or a damaged, foreign or exposed entry must give the cold output
instead, byte for byte (the cold output is the same run with the cache off).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from ocishim import filtercache
from ocishim.integrations.hook import precreate
from ocishim.integrations.settings import Settings, load_settings
from ocishim.patch import parse_mode
from tests import shared_data

REPO = Path(__file__).resolve().parents[1]
PROFILES = shared_data.PROFILES

# The entry format, written out again: magic line, key, SHA-256 of the payload, SHA-256
# of the program, then the payload (JSON with the rewritten seccomp and the annotation).
MAGIC = b"ocishim-filter-cache 1\n"
# ret ERRNO(99): a program no real profile gives, base64 as crun's annotation holds it.
MARKER_PROGRAM = struct.pack("<HBBI", 0x06, 0, 0, 0x00050000 | 99)
MARKER = base64.b64encode(MARKER_PROGRAM).decode()

SMALL = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
         "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
         "syscalls": [{"names": ["read", "write", "exit_group", "getppid"], "action": "SCMP_ACT_ALLOW"}]}


def config_bytes(seccomp: dict, annotations: dict | None = None) -> bytes:
    config = {"ociVersion": "1.0.2", "process": {"args": ["/bin/true"]},
              "linux": {"seccomp": seccomp}}
    if annotations is not None:
        config["annotations"] = annotations
    return json.dumps(config, indent=1).encode()


def split_entry(data: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    assert data.startswith(MAGIC)
    key, payload_sum, program_sum, payload = data[len(MAGIC):].split(b"\n", 3)
    return key, payload_sum, program_sum, payload


def make_entry(key: bytes, payload: dict) -> bytes:
    body = json.dumps(payload, sort_keys=True).encode()
    program = base64.b64decode(payload["annotation"])
    return b"".join((MAGIC, key, b"\n", hashlib.sha256(body).hexdigest().encode(), b"\n",
                     hashlib.sha256(program).hexdigest().encode(), b"\n", body))


@pytest.fixture(autouse=True)
def _no_env_cache(monkeypatch):
    monkeypatch.delenv("OCISHIM_CACHE", raising=False)  # the settings choose, per test


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    path = tmp_path / "cache"
    path.mkdir(mode=0o700)
    return path


def settings_for(tmp_path: Path, cache: Path | str, mode: str = "unnamed", **kw) -> Settings:
    return Settings(mode=parse_mode(mode), cache=str(cache), log=str(tmp_path / "ocishim.log"), **kw)


def hook(data: bytes, settings: Settings) -> tuple[int, str]:
    out = io.StringIO()
    code = precreate(io.BytesIO(data), out, settings)
    return code, out.getvalue()


def cold(data: bytes, settings: Settings) -> str:
    code, out = hook(data, settings.replace(cache="off"))
    assert code == 0
    return out


def entries(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if len(p.name) == 64)


def plant_marker(entry: Path) -> None:
    """Replace entry's program by the marker, with every checksum right for it."""
    key, _, _, payload = split_entry(entry.read_bytes())
    value = json.loads(payload)
    value["annotation"], value["instructions"] = MARKER, 1
    entry.write_bytes(make_entry(key, value))


def warm(data: bytes, settings: Settings, directory: Path) -> Path:
    """One cold run through the cache; the one entry it wrote, marker planted."""
    before = set(entries(directory))
    code, _ = hook(data, settings)
    assert code == 0
    new = set(entries(directory)) - before
    assert len(new) == 1, new
    entry = new.pop()
    plant_marker(entry)
    return entry


# ---------------------------------------------------------------- hits are real and exact

def test_hit_is_byte_identical_to_cold_for_docker_default(tmp_path, cache_dir):
    from ocishim.profile import load, to_oci

    seccomp = to_oci(load(str(PROFILES / "docker-default.json"), kernel=(6, 1), arch="amd64").profile)
    seccomp["architectures"] = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    data = config_bytes(seccomp, {"x": "0.10"})
    settings = settings_for(tmp_path, cache_dir)
    reference = cold(data, settings)
    first = hook(data, settings)
    assert entries(cache_dir), "the miss stored nothing"
    second = hook(data, settings)
    assert first == second == (0, reference)
    assert "(compiled-filter cache)" in (tmp_path / "ocishim.log").read_text().splitlines()[-1]


def test_planted_entry_is_served(tmp_path, cache_dir):
    """The control for every test below: an intact entry under the right key is loaded."""
    settings = settings_for(tmp_path, cache_dir)
    data = config_bytes(SMALL)
    warm(data, settings, cache_dir)
    code, out = hook(data, settings)
    assert code == 0 and json.loads(out)["annotations"]["run.oci.seccomp_bpf_data"] == MARKER


# ---------------------------------------------------------------- every key field

def _flips(tmp_path, cache_dir):
    base = settings_for(tmp_path, cache_dir)
    other_profile = json.loads(json.dumps(SMALL))
    other_profile["syscalls"][0]["names"].append("getpid")
    arches = dict(SMALL, architectures=["SCMP_ARCH_X86_64"])
    unknown = json.loads(json.dumps(SMALL))
    unknown["syscalls"].append({"names": ["h11_no_such_call"], "action": "SCMP_ACT_ALLOW"})
    return {
        "profile": (config_bytes(other_profile), base),
        "arches": (config_bytes(arches), base),
        "mode": (config_bytes(SMALL), base.replace(mode=parse_mode("max"))),
        "emulate": (config_bytes(SMALL), base.replace(emulate=(5, 10))),
        "unknown-syscall": (config_bytes(SMALL), base.replace(unknown_fail=True)),
        "annotation": (config_bytes(SMALL, {"ocishim.enosys": "max"}), base),
    }


@pytest.mark.parametrize("field", ["profile", "arches", "mode", "emulate", "unknown-syscall",
                                   "annotation"])
def test_request_field_flipped_is_not_served(tmp_path, cache_dir, field):
    settings = settings_for(tmp_path, cache_dir)
    entry = warm(config_bytes(SMALL), settings, cache_dir)
    data, flipped = _flips(tmp_path, cache_dir)[field]
    code, out = hook(data, flipped)
    assert (code, out) == (0, cold(data, flipped))
    assert MARKER not in out
    assert split_entry(entry.read_bytes())[3].count(MARKER.encode()) == 1  # still planted


@pytest.mark.parametrize("field,value", [("ocishim", "0.0.1"), ("code", "0" * 64), ("table", "1" * 64),
                                         ("libseccomp", "2.5.3"), ("native", 0x40000003)])
def test_host_field_flipped_is_not_served(tmp_path, cache_dir, monkeypatch, field, value):
    """A planted entry for this host, read by a host that differs in one field (another
    ocishim, code, syscall table, libseccomp or native arch)."""
    settings = settings_for(tmp_path, cache_dir)
    data = config_bytes(SMALL)
    warm(data, settings, cache_dir)
    monkeypatch.setattr(filtercache, "_host", filtercache.host().replace(**{field: value}))
    code, out = hook(data, settings)
    assert (code, out) == (0, cold(data, settings)) and MARKER not in out


def test_host_fields_come_from_the_real_sources():
    """What the key is made of, against independent readings of the same facts."""
    import pyseccomp

    from ocishim import __version__, libseccomp

    found = filtercache.host()
    assert found.libseccomp == ".".join(map(str, libseccomp.version()))
    assert found.native == pyseccomp.system_arch()
    installed = (Path(filtercache.__file__).parent / "syscalls" / "_data.py").stat()
    assert found.table == (f"{installed.st_size}:{installed.st_mtime_ns}:{installed.st_ctime_ns}:"
                           f"{installed.st_dev}:{installed.st_ino}")
    assert found.ocishim == __version__
    assert filtercache.MINIMUM_LIBSECCOMP == libseccomp.MINIMUM
    from ocishim.integrations import settings

    assert settings.DEFAULT_CACHE == filtercache.DEFAULT_DIR
    from ocishim.integrations.config import BPF_ANNOTATION

    assert filtercache.BPF_ANNOTATION == BPF_ANNOTATION


def test_table_identity_follows_every_change(tmp_path):
    """Rewritten with the same bytes, or touched back to its old mtime, or replaced by a
    copy: the table's part of the key changes each time."""
    table = tmp_path / "_data.py"
    table.write_text("TABLE = {}\n")
    seen = [filtercache._file_identity(str(table))]
    before = table.stat()
    table.write_text("TABLE = {}\n")  # the same content, written again
    os.utime(table, ns=(before.st_atime_ns, before.st_mtime_ns))  # and its mtime put back
    seen.append(filtercache._file_identity(str(table)))
    copy = tmp_path / "copy.py"
    copy.write_bytes(table.read_bytes())
    os.replace(copy, table)
    seen.append(filtercache._file_identity(str(table)))
    assert len(set(seen)) == 3


def test_code_fingerprint_follows_every_source_file(tmp_path, monkeypatch):
    copy = tmp_path / "pkg"
    (copy / "sub").mkdir(parents=True)
    (copy / "a.py").write_text("a = 1\n")
    (copy / "sub" / "b.py").write_text("b = 1\n")
    monkeypatch.setattr(filtercache, "_PACKAGE", str(copy))
    first = filtercache.code_fingerprint()
    os.utime(copy / "sub" / "b.py", ns=(1, 1))
    second = filtercache.code_fingerprint()
    (copy / "a.py").write_text("a = 22\n")
    third = filtercache.code_fingerprint()
    assert len({first, second, third}) == 3


# ---------------------------------------------------------------- rule 10

KILL = {"defaultAction": "SCMP_ACT_KILL_PROCESS", "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]}


def test_weaker_annotation_is_refused_with_a_warm_cache(tmp_path, cache_dir):
    """Settings off, default KILL_PROCESS: the annotation's unnamed would answer ENOSYS
    where the settings kill. The settings' entry is warm (and planted); the annotated
    config is still refused, and the refusal is not cached."""
    settings = settings_for(tmp_path, cache_dir, mode="off")
    warm(config_bytes(KILL), settings, cache_dir)
    before = {p: p.read_bytes() for p in entries(cache_dir)}
    data = config_bytes(KILL, {"ocishim.enosys": "unnamed"})
    for _ in range(2):
        code, out = hook(data, settings)
        assert code == 2 and out == ""
    assert {p: p.read_bytes() for p in entries(cache_dir)} == before
    assert "annotations.ocishim.enosys: refused: weaker" in (tmp_path / "ocishim.log").read_text()


def test_entry_of_an_allowed_pair_is_not_served_to_a_refused_pair(tmp_path, cache_dir):
    """The same annotation (unnamed, default KILL_PROCESS) is allowed under settings
    unnamed and refused under settings off: the entry made for the first pair, which
    has the very same program to offer, must not be served to the second."""
    data = config_bytes(KILL, {"ocishim.enosys": "unnamed"})
    allowed = settings_for(tmp_path, cache_dir, mode="unnamed")
    assert hook(data, allowed)[0] == 0
    assert hook(data, allowed)[0] == 0  # the entry is there and served
    assert len(entries(cache_dir)) == 1
    code, out = hook(data, settings_for(tmp_path, cache_dir, mode="off"))
    assert (code, out) == (2, "")
    assert "annotations.ocishim.enosys: refused: weaker" in (tmp_path / "ocishim.log").read_text()


def test_allowed_annotation_gets_its_own_program(tmp_path, cache_dir):
    """An annotation that is allowed (off under ERRNO(EPERM): ERRNOs are equal) gets the
    program for its own mode, never the settings' cached one."""
    settings = settings_for(tmp_path, cache_dir)
    plain = config_bytes(SMALL)
    hook(plain, settings)
    annotated = config_bytes(SMALL, {"ocishim.enosys": "off"})
    expected = cold(annotated, settings)
    assert json.loads(expected)["annotations"]["run.oci.seccomp_bpf_data"] != \
        json.loads(cold(plain, settings))["annotations"]["run.oci.seccomp_bpf_data"]
    assert hook(annotated, settings) == (0, expected)
    assert hook(annotated, settings) == (0, expected)  # now from its own entry
    assert len(entries(cache_dir)) == 2


def test_ignored_annotations_share_the_settings_entry(tmp_path, cache_dir):
    settings = settings_for(tmp_path, cache_dir, annotations=False)
    warm(config_bytes(SMALL), settings, cache_dir)
    code, out = hook(config_bytes(SMALL, {"ocishim.enosys": "off"}), settings)
    assert code == 0 and MARKER in out


# ---------------------------------------------------------------- damaged and foreign entries

def _truncate(entry: Path) -> None:
    entry.write_bytes(entry.read_bytes()[:-20])


def _flip_payload_bit(entry: Path) -> None:
    data = bytearray(entry.read_bytes())
    data[-30] ^= 0x01
    entry.write_bytes(bytes(data))


def _flip_program_bit_rechecksummed_payload(entry: Path) -> None:
    """The payload checksum made right again, the program checksum left: caught by it."""
    key, _, program_sum, payload = split_entry(entry.read_bytes())
    value = json.loads(payload)
    program = bytearray(base64.b64decode(value["annotation"]))
    program[0] ^= 0x01
    value["annotation"] = base64.b64encode(bytes(program)).decode()
    body = json.dumps(value, sort_keys=True).encode()
    entry.write_bytes(b"".join((MAGIC, key, b"\n", hashlib.sha256(body).hexdigest().encode(), b"\n",
                                program_sum, b"\n", body)))


def _foreign_owner(entry: Path) -> None:
    os.chown(entry, 65534, 65534)


def _group_writable(entry: Path) -> None:
    entry.chmod(0o664)


def _symlink(entry: Path) -> None:
    target = entry.with_name("elsewhere")
    entry.rename(target)
    entry.symlink_to(target.name)


def _empty(entry: Path) -> None:
    entry.write_bytes(b"")


DAMAGE = {"truncated": _truncate, "payload bit": _flip_payload_bit,
          "program bit": _flip_program_bit_rechecksummed_payload, "owned by nobody": _foreign_owner,
          "group-writable": _group_writable, "symlink": _symlink, "empty": _empty}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_entry_is_rebuilt_never_loaded(tmp_path, cache_dir, damage):
    settings = settings_for(tmp_path, cache_dir)
    data = config_bytes(SMALL)
    entry = warm(data, settings, cache_dir)
    DAMAGE[damage](entry)
    code, out = hook(data, settings)
    assert (code, out) == (0, cold(data, settings)) and MARKER not in out
    # Rebuilt: the entry is a regular file of ours again, holding the cold program.
    st = os.lstat(entry)
    assert stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022
    payload = json.loads(split_entry(entry.read_bytes())[3])
    assert payload["annotation"] == json.loads(out)["annotations"]["run.oci.seccomp_bpf_data"]


def test_entry_swapped_between_keys_is_not_loaded(tmp_path, cache_dir):
    """Profile A's (planted) entry copied under profile B's name: B gets its own program."""
    settings = settings_for(tmp_path, cache_dir)
    a, b = config_bytes(SMALL), config_bytes(dict(SMALL, defaultErrnoRet=13))
    entry_a = warm(a, settings, cache_dir)
    hook(b, settings)
    (entry_b,) = set(entries(cache_dir)) - {entry_a}
    entry_b.write_bytes(entry_a.read_bytes())
    code, out = hook(b, settings)
    assert (code, out) == (0, cold(b, settings)) and MARKER not in out


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o707, 0o750])
def test_exposed_directory_is_not_used(tmp_path, cache_dir, mode):
    settings = settings_for(tmp_path, cache_dir)
    data = config_bytes(SMALL)
    entry = warm(data, settings, cache_dir)
    planted = entry.read_bytes()
    cache_dir.chmod(mode)
    code, out = hook(data, settings)
    assert (code, out) == (0, cold(data, settings)) and MARKER not in out
    assert entry.read_bytes() == planted and entries(cache_dir) == [entry]  # not written either
    assert "cache not used" in (tmp_path / "ocishim.log").read_text()


def test_directory_of_another_user_is_not_used(tmp_path, cache_dir):
    settings = settings_for(tmp_path, cache_dir)
    data = config_bytes(SMALL)
    warm(data, settings, cache_dir)
    os.chown(cache_dir, 65534, 65534)
    code, out = hook(data, settings)
    assert (code, out) == (0, cold(data, settings)) and MARKER not in out


def test_directory_under_a_writable_parent_is_not_used(tmp_path):
    parent = tmp_path / "open"
    parent.mkdir()
    parent.chmod(0o777)
    settings = settings_for(tmp_path, parent / "cache")
    code, out = hook(config_bytes(SMALL), settings)
    assert (code, out) == (0, cold(config_bytes(SMALL), settings))
    assert not (parent / "cache").exists()


def test_directory_symlink_is_not_used(tmp_path, cache_dir):
    link = tmp_path / "link"
    link.symlink_to(cache_dir)
    settings = settings_for(tmp_path, link)
    code, out = hook(config_bytes(SMALL), settings)
    assert code == 0 and entries(cache_dir) == []


def test_new_directory_is_root_only(tmp_path):
    settings = settings_for(tmp_path, tmp_path / "new")
    assert hook(config_bytes(SMALL), settings)[0] == 0
    st = os.lstat(tmp_path / "new")
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
    assert len(entries(tmp_path / "new")) == 1
    assert [p.name for p in (tmp_path / "new").iterdir() if len(p.name) != 64] == []  # no temporaries


# ---------------------------------------------------------------- bounded, oldest first

def test_oldest_entries_are_evicted(tmp_path, cache_dir, monkeypatch):
    settings = settings_for(tmp_path, cache_dir)
    made = []
    for i, mode in enumerate(("unnamed", "max", "auto")):
        hook(config_bytes(SMALL), settings.replace(mode=parse_mode(mode)))
        (new,) = set(entries(cache_dir)) - set(made)
        os.utime(new, ns=(10**18 + i, 10**18 + i))  # ages in the order written
        made.append(new)
    sizes = [p.stat().st_size for p in made]
    monkeypatch.setattr(filtercache, "MAX_BYTES", sizes[1] + sizes[2] + sizes[0] // 2)
    hook(config_bytes(SMALL), settings.replace(mode=parse_mode("kernel:5.4")))
    left = entries(cache_dir)
    assert made[0] not in left and made[1] in left and made[2] in left and len(left) == 3
    assert sum(p.stat().st_size for p in left) <= filtercache.MAX_BYTES


def test_a_hit_makes_an_entry_young(tmp_path, cache_dir):
    settings = settings_for(tmp_path, cache_dir)
    hook(config_bytes(SMALL), settings)
    (entry,) = entries(cache_dir)
    os.utime(entry, ns=(10**9, 10**9))
    hook(config_bytes(SMALL), settings)
    assert entry.stat().st_mtime_ns > 10**9


# ---------------------------------------------------------------- settings and the CLI

def _write_settings(path: Path, values: dict) -> Path:
    path.write_text(json.dumps(values))
    path.chmod(0o644)
    return path


def test_settings_cache_values(tmp_path):
    assert load_settings(str(_write_settings(tmp_path / "a.json", {"cache": "off"}))).cache == "off"
    assert load_settings(str(_write_settings(tmp_path / "b.json", {}))).cache == "off"  # not the system's
    for bad, message in (("relative/dir", "must be an absolute directory or off"), (7, "must be a string")):
        with pytest.raises(Exception) as info:
            load_settings(str(_write_settings(tmp_path / "c.json", {"cache": bad})))
        assert str(info.value).endswith(f"c.json: cache: {message}")


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OCISHIM_")}
    return subprocess.run([sys.executable, "-m", "ocishim", *args], capture_output=True, text=True,
                          env={**base, "PYTHONPATH": str(REPO), **env}, timeout=120)


def test_cli_cache_stats_and_clear(tmp_path, cache_dir):
    settings = settings_for(tmp_path, cache_dir)
    for mode in ("unnamed", "max"):
        hook(config_bytes(SMALL), settings.replace(mode=parse_mode(mode)))
    (cache_dir / "README").write_text("not an entry\n")
    sizes = sum(p.stat().st_size for p in entries(cache_dir))
    env = {"OCISHIM_CACHE": str(cache_dir)}
    proc = _cli(["cache", "stats"], env)
    assert proc.returncode == 0, proc.stderr
    assert f"entries: 2\nbytes: {sizes} " in proc.stdout and "state: ok" in proc.stdout
    proc = _cli(["cache", "clear"], env)
    assert proc.returncode == 0 and "removed 2 entries" in proc.stdout
    assert sorted(p.name for p in cache_dir.iterdir()) == ["README"]
    settings_file = _write_settings(tmp_path / "s.json", {"cache": str(cache_dir)})
    proc = _cli(["cache", "stats"], {"OCISHIM_CONFIG": str(settings_file)})
    assert f"directory: {cache_dir}\n" in proc.stdout and "entries: 0" in proc.stdout


def test_hook_subprocess_hits_and_says_so(tmp_path, cache_dir):
    """The installed path: `ocishim hook precreate` in its own process, twice. From a
    copy of the package: the key follows every source file, and others edit the checkout."""
    import shutil

    shutil.copytree(REPO / "ocishim", tmp_path / "src" / "ocishim",
                    ignore=shutil.ignore_patterns("__pycache__"))
    settings_file = _write_settings(tmp_path / "s.json", {"cache": str(cache_dir),
                                                          "log": str(tmp_path / "hook.log")})
    base = {k: v for k, v in os.environ.items() if not k.startswith("OCISHIM_")}
    env = {**base, "PYTHONPATH": str(tmp_path / "src"), "OCISHIM_CONFIG": str(settings_file)}
    # bin/ocishim, the script podman runs (it skips the CLI's parser), then `python -m ocishim`
    # (from tmp_path: -m puts the working directory first on sys.path).
    outs = [subprocess.run([sys.executable, *command, "hook", "precreate"], input=config_bytes(SMALL),
                           capture_output=True, env=env, timeout=120, cwd=tmp_path)
            for command in ([str(REPO / "bin" / "ocishim")], ["-m", "ocishim"])]
    assert [p.returncode for p in outs] == [0, 0] and outs[0].stdout == outs[1].stdout
    version = subprocess.run([sys.executable, str(REPO / "bin" / "ocishim"), "--version"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("ocishim ")
    lines = (tmp_path / "hook.log").read_text().splitlines()
    assert "(compiled-filter cache)" not in lines[-2] and lines[-1].endswith("(compiled-filter cache)")


def test_cli_clear_refuses_an_exposed_directory(tmp_path, cache_dir):
    hook(config_bytes(SMALL), settings_for(tmp_path, cache_dir))
    cache_dir.chmod(0o777)
    proc = _cli(["cache", "clear"], {"OCISHIM_CACHE": str(cache_dir)})
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == f"ocishim: cache: cache directory {cache_dir}: mode 0777, must be 0700\n"
    assert len(entries(cache_dir)) == 1


def test_parent_reached_through_a_symlink_is_judged_where_it_leads(tmp_path):
    """root-only/link -> open/inner: the link's own directory is fine, but `open` (0777)
    lets another user swap `inner`; the cache is not used."""
    (tmp_path / "open" / "inner").mkdir(parents=True)
    (tmp_path / "open").chmod(0o777)
    (tmp_path / "safe").mkdir(mode=0o755)
    (tmp_path / "safe" / "link").symlink_to(tmp_path / "open" / "inner")
    settings = settings_for(tmp_path, tmp_path / "safe" / "link" / "cache")
    code, out = hook(config_bytes(SMALL), settings)
    assert (code, out) == (0, cold(config_bytes(SMALL), settings))
    assert not (tmp_path / "open" / "inner" / "cache").exists()
    assert f"{tmp_path}/open is writable by group or others" in (tmp_path / "ocishim.log").read_text()


def test_default_directory_is_used_only_where_it_exists(tmp_path, monkeypatch):
    """The default directory (here a stand-in) is never created: nothing is left in
    /var/cache by a run with the defaults; once installed (0700), it is used."""
    default = tmp_path / "var-cache-ocishim"
    monkeypatch.setattr(filtercache, "DEFAULT_DIR", str(default))
    settings = settings_for(tmp_path, default)
    assert hook(config_bytes(SMALL), settings) == (0, cold(config_bytes(SMALL), settings))
    assert not default.exists()
    assert "cache" not in (tmp_path / "ocishim.log").read_text().split("precreate: patched")[0]
    assert filtercache.stats(str(default)).state.startswith(f"off: {default} does not exist")
    default.mkdir(mode=0o700)
    hook(config_bytes(SMALL), settings)
    assert len(entries(default)) == 1
