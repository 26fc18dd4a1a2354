"""The JSON field names of the documents ocishim reads, per object type, as data.

Go's encoding/json (runc, containerd, moby, podman's containers/common) matches an
object key to a struct field exactly first and, failing that, without regard to
case: runc reads `"Action": "SCMP_ACT_ALLOW"` as the rule's action, where crun
(yajl, exact names) and ocishim ignore the key and read `"action"`. To refuse such
configs (semantics.md rule 11) the reader must know, at every position of the
document, which names are struct fields there; this module says so, object type by
object type, written from the Go types:

- OCI config.json: runtime-spec specs-go/config.go (Spec and everything below it);
- the bare linux.seccomp object: specs.LinuxSeccomp;
- Docker-format profiles: moby/profiles seccomp.Seccomp (which embeds
  specs.LinuxSeccomp and specs.LinuxSyscall, adding archMap, name, comment,
  includes and excludes) together with containers/common pkg/seccomp (the podman
  dialect: defaultErrno, errno). One schema for both: the same file can be handed
  to either reader.

Maps (annotations, sysctl, ...) have free keys, and interface{} fields
(windows.credentialSpec) free content: neither is checked.
"""

from __future__ import annotations

from ..record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping, Optional, Union


class Struct:
    """A Go struct: its JSON field names and what each one holds."""

    __slots__ = ("name", "fields", "_folded")

    def __init__(self, name: str, fields: Mapping[str, Schema]) -> None:
        self.name = name  # the Go type, for messages and for readers of this table
        self.fields = fields
        self._folded: dict[str, str] | None = None  # go_fold(field) -> field, on first use

    def __repr__(self) -> str:
        return f"Struct({self.name!r})"

    def twin(self, key: str) -> str | None:
        """The field Go would decode `key` into although it is not spelt like it, or None."""
        if key in self.fields:
            return None
        if self._folded is None:
            self._folded = {go_fold(f): f for f in self.fields}
        return self._folded.get(go_fold(key))


class ArrayOf(Record):
    """A JSON array whose items all have one schema."""

    __slots__ = ("item",)
    item: Schema


class MapOf(Record):
    """A Go map: free keys, every value of one schema."""

    __slots__ = ("value",)
    value: Schema


# None: a scalar, or a value whose keys nobody matches to fields (interface{}).
if TYPE_CHECKING:
    Schema = Optional[Union[Struct, ArrayOf, MapOf]]
FREE: Schema = None


# ---------------------------------------------------------------- Go's folding

def _simple_lower(c: str) -> str:
    # str.lower() applies full case mapping; Go's unicode.ToLower the simple one.
    # They differ on one character only (U+0130 lowers to "i" + U+0307 in full).
    if c == "\u0130":
        return "i"
    low = c.lower()
    return low if len(low) == 1 else c


def _simple_upper(c: str) -> str:
    up = c.upper()
    return up if len(up) == 1 else c


def go_fold(key: str) -> str:
    """A form of `key` that two keys share when a Go decoder takes one for the other.

    Go 1.21+ folds each rune r to ToUpper(ToLower(r)) (so U+0130 "İ" and U+0131 "ı"
    become "I", U+017F "ſ" becomes "S", the Kelvin sign U+212A "K"); Go up to 1.20
    compared with bytes.EqualFold (simple folding orbits: "ſ" with "s", Kelvin with
    "k"). For ASCII field names, which all spec fields are, the first relation holds
    every pair the second does, so refusing by it covers runc builds of either age.
    """
    if key.isascii():
        return key.upper()
    out = []
    for c in key:
        if c < "\x80":
            out.append(c.upper())
        else:
            out.append(_simple_upper(_simple_lower(c)))
    return "".join(out)


def _struct(name: str, fields: Mapping[str, Schema]) -> Struct:
    return Struct(name, dict(fields))


def _scalars(name: str, *names: str) -> Struct:
    return Struct(name, {n: FREE for n in names})


# ---------------------------------------------------------------- linux.seccomp

SECCOMP_ARG = _scalars("LinuxSeccompArg", "index", "value", "valueTwo", "op")
SECCOMP_SYSCALL = _struct("LinuxSyscall", {
    "names": FREE, "action": FREE, "errnoRet": FREE, "args": ArrayOf(SECCOMP_ARG),
})
SECCOMP = _struct("LinuxSeccomp", {
    "defaultAction": FREE, "defaultErrnoRet": FREE, "architectures": FREE, "flags": FREE,
    "listenerPath": FREE, "listenerMetadata": FREE, "syscalls": ArrayOf(SECCOMP_SYSCALL),
})

# ---------------------------------------------------------------- Docker / podman profiles

DOCKER_FILTER = _scalars("Filter", "caps", "arches", "minKernel")
DOCKER_SYSCALL = _struct("Syscall", {
    **SECCOMP_SYSCALL.fields,
    "name": FREE, "comment": FREE, "errno": FREE,
    "includes": DOCKER_FILTER, "excludes": DOCKER_FILTER,
})
DOCKER_ARCH = _scalars("Architecture", "architecture", "subArchitectures")
DOCKER_PROFILE = _struct("Seccomp", {
    **SECCOMP.fields,
    "defaultErrno": FREE, "archMap": ArrayOf(DOCKER_ARCH), "syscalls": ArrayOf(DOCKER_SYSCALL),
})

# ---------------------------------------------------------------- process, root, mounts, hooks

BOX = _scalars("Box", "height", "width")
USER = _scalars("User", "uid", "gid", "umask", "additionalGids", "username")
CAPABILITIES = _scalars("LinuxCapabilities", "bounding", "effective", "inheritable", "permitted",
                        "ambient")
RLIMIT = _scalars("POSIXRlimit", "type", "hard", "soft")
SCHEDULER = _scalars("Scheduler", "policy", "nice", "priority", "flags", "runtime", "deadline",
                     "period")
IO_PRIORITY = _scalars("LinuxIOPriority", "class", "priority")
CPU_AFFINITY = _scalars("CPUAffinity", "initial", "final")
PROCESS = _struct("Process", {
    "terminal": FREE, "consoleSize": BOX, "user": USER, "args": FREE, "commandLine": FREE,
    "env": FREE, "cwd": FREE, "capabilities": CAPABILITIES, "rlimits": ArrayOf(RLIMIT),
    "noNewPrivileges": FREE, "apparmorProfile": FREE, "oomScoreAdj": FREE,
    "scheduler": SCHEDULER, "selinuxLabel": FREE, "ioPriority": IO_PRIORITY,
    "execCPUAffinity": CPU_AFFINITY,
})
ROOT = _scalars("Root", "path", "readonly")
ID_MAPPING = _scalars("LinuxIDMapping", "containerID", "hostID", "size")
MOUNT = _struct("Mount", {
    "destination": FREE, "type": FREE, "source": FREE, "options": FREE,
    "uidMappings": ArrayOf(ID_MAPPING), "gidMappings": ArrayOf(ID_MAPPING),
})
HOOK = _scalars("Hook", "path", "args", "env", "timeout")
HOOKS = _struct("Hooks", {
    stage: ArrayOf(HOOK)
    for stage in ("prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop")
})

# ---------------------------------------------------------------- linux

NAMESPACE = _scalars("LinuxNamespace", "type", "path")
TIME_OFFSET = _scalars("LinuxTimeOffset", "secs", "nanosecs")
HUGEPAGE_LIMIT = _scalars("LinuxHugepageLimit", "pageSize", "limit")
INTERFACE_PRIORITY = _scalars("LinuxInterfacePriority", "name", "priority")
# Both embed LinuxBlockIODevice (major, minor): Go promotes its fields.
WEIGHT_DEVICE = _scalars("LinuxWeightDevice", "major", "minor", "weight", "leafWeight")
THROTTLE_DEVICE = _scalars("LinuxThrottleDevice", "major", "minor", "rate")
BLOCK_IO = _struct("LinuxBlockIO", {
    "weight": FREE, "leafWeight": FREE, "weightDevice": ArrayOf(WEIGHT_DEVICE),
    "throttleReadBpsDevice": ArrayOf(THROTTLE_DEVICE),
    "throttleWriteBpsDevice": ArrayOf(THROTTLE_DEVICE),
    "throttleReadIOPSDevice": ArrayOf(THROTTLE_DEVICE),
    "throttleWriteIOPSDevice": ArrayOf(THROTTLE_DEVICE),
})
MEMORY = _scalars("LinuxMemory", "limit", "reservation", "swap", "kernel", "kernelTCP",
                  "swappiness", "disableOOMKiller", "useHierarchy", "checkBeforeUpdate")
CPU = _scalars("LinuxCPU", "shares", "quota", "burst", "period", "realtimeRuntime",
               "realtimePeriod", "cpus", "mems", "idle")
PIDS = _scalars("LinuxPids", "limit")
NETWORK = _struct("LinuxNetwork", {"classID": FREE, "priorities": ArrayOf(INTERFACE_PRIORITY)})
RDMA = _scalars("LinuxRdma", "hcaHandles", "hcaObjects")
DEVICE_CGROUP = _scalars("LinuxDeviceCgroup", "allow", "type", "major", "minor", "access")
RESOURCES = _struct("LinuxResources", {
    "devices": ArrayOf(DEVICE_CGROUP), "memory": MEMORY, "cpu": CPU, "pids": PIDS,
    "blockIO": BLOCK_IO, "hugepageLimits": ArrayOf(HUGEPAGE_LIMIT), "network": NETWORK,
    "rdma": MapOf(RDMA), "unified": MapOf(FREE),
})
DEVICE = _scalars("LinuxDevice", "path", "type", "major", "minor", "fileMode", "uid", "gid")
NET_DEVICE = _scalars("LinuxNetDevice", "name")
INTEL_RDT = _scalars("LinuxIntelRdt", "closID", "schemata", "l3CacheSchema", "memBwSchema",
                     "enableMonitoring")
MEMORY_POLICY = _scalars("LinuxMemoryPolicy", "mode", "nodes", "flags")
PERSONALITY = _scalars("LinuxPersonality", "domain", "flags")
LINUX = _struct("Linux", {
    "uidMappings": ArrayOf(ID_MAPPING), "gidMappings": ArrayOf(ID_MAPPING),
    "sysctl": MapOf(FREE), "resources": RESOURCES, "cgroupsPath": FREE,
    "namespaces": ArrayOf(NAMESPACE), "devices": ArrayOf(DEVICE),
    "netDevices": MapOf(NET_DEVICE), "seccomp": SECCOMP, "rootfsPropagation": FREE,
    "maskedPaths": FREE, "readonlyPaths": FREE, "mountLabel": FREE, "intelRdt": INTEL_RDT,
    "memoryPolicy": MEMORY_POLICY, "personality": PERSONALITY,
    "timeOffsets": MapOf(TIME_OFFSET),
})

# ---------------------------------------------------------------- other platforms

SOLARIS_ANET = _scalars("SolarisAnet", "linkname", "lowerLink", "allowedAddress",
                        "configureAllowedAddress", "defrouter", "linkProtection", "macAddress")
SOLARIS = _struct("Solaris", {
    "milestone": FREE, "limitpriv": FREE, "maxShmMemory": FREE,
    "anet": ArrayOf(SOLARIS_ANET),
    "cappedCPU": _scalars("SolarisCappedCPU", "ncpus"),
    "cappedMemory": _scalars("SolarisCappedMemory", "physical", "swap"),
})
WINDOWS_CPU = _struct("WindowsCPUResources", {
    "count": FREE, "shares": FREE, "maximum": FREE,
    "affinity": ArrayOf(_scalars("WindowsCPUGroupAffinity", "mask", "group")),
})
WINDOWS = _struct("Windows", {
    "layerFolders": FREE,
    "devices": ArrayOf(_scalars("WindowsDevice", "id", "idType")),
    "resources": _struct("WindowsResources", {
        "memory": _scalars("WindowsMemoryResources", "limit"),
        "cpu": WINDOWS_CPU,
        "storage": _scalars("WindowsStorageResources", "iops", "bps", "sandboxSize"),
    }),
    "credentialSpec": FREE,  # interface{}: free content
    "servicing": FREE, "ignoreFlushesDuringBoot": FREE,
    "hyperv": _scalars("WindowsHyperV", "utilityVMPath"),
    "network": _scalars("WindowsNetwork", "endpointList", "allowUnqualifiedDNSQuery",
                        "DNSSearchList", "networkSharedContainerName", "networkNamespace"),
})
VM = _struct("VM", {
    "hypervisor": _scalars("VMHypervisor", "path", "parameters"),
    "kernel": _scalars("VMKernel", "path", "parameters", "initrd"),
    "image": _scalars("VMImage", "path", "format"),
    "hwconfig": _struct("HWConfig", {
        "deviceTree": FREE, "vcpus": FREE, "memory": FREE, "dtdevs": FREE,
        "iomems": ArrayOf(_scalars("IOMems", "firstGFN", "firstMFN", "nrMFNs")), "irqs": FREE,
    }),
})
ZOS = _struct("ZOS", {"namespaces": ArrayOf(_scalars("ZOSNamespace", "type", "path"))})
FREEBSD = _struct("FreeBSD", {
    "devices": ArrayOf(_scalars("FreeBSDDevice", "path", "mode")),
    "jail": _struct("FreeBSDJail", {
        "parent": FREE, "host": FREE, "ip4": FREE, "ip4Addr": FREE, "ip6": FREE,
        "ip6Addr": FREE, "vnet": FREE, "interface": FREE, "vnetInterfaces": FREE,
        "sysvmsg": FREE, "sysvsem": FREE, "sysvshm": FREE, "enforceStatfs": FREE,
        "allow": _scalars("FreeBSDJailAllow", "setHostname", "rawSockets", "chflags", "mount",
                          "quotas", "socketAf", "mlock", "reservedPorts", "suser"),
    }),
})

# ---------------------------------------------------------------- config.json

CONFIG = _struct("Spec", {
    "ociVersion": FREE, "process": PROCESS, "root": ROOT, "hostname": FREE,
    "domainname": FREE, "mounts": ArrayOf(MOUNT), "hooks": HOOKS,
    "annotations": MapOf(FREE), "linux": LINUX, "solaris": SOLARIS, "windows": WINDOWS,
    "vm": VM, "zos": ZOS, "freebsd": FREEBSD,
})

# parse.KINDS -> the schema of the whole document.
BY_KIND: Mapping[str, Struct] = {
    "bundle": CONFIG,
    "config": CONFIG,
    "seccomp": DOCKER_PROFILE,
    "docker": DOCKER_PROFILE,
}
