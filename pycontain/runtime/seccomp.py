"""Seccomp filters from an OCI ``linux.seccomp`` section, through libseccomp.

libseccomp (``libseccomp.so.2``, Debian package libseccomp2, which runc itself depends on) is
loaded with cffi in ABI mode, so no header or compiler is needed: the library is the well-kept
implementation that runc, crun and podman use, and this module only translates the OCI JSON into
its calls, the way runc does:

* ``defaultAction`` (+ ``defaultErrnoRet``), ``architectures``, ``syscalls[].names/action/
  errnoRet/args`` (``index``, ``value``, ``valueTwo``, ``op``); ``flags`` that libseccomp offers
  (``SECCOMP_FILTER_FLAG_LOG``, ``SECCOMP_FILTER_FLAG_SPEC_ALLOW``); the TSYNC flag is a no-op here
  (the container process is single-threaded).
* syscall names this kernel/libseccomp do not know are skipped (as runc does); rules whose
  action is the default action are skipped (libseccomp refuses them).
* several conditions on the *same* argument become separate rules (OR), otherwise one rule with
  all conditions (AND) - runc's interpretation.
* ``SCMP_ACT_NOTIFY`` (a listener socket) is not supported and reported.

``prepare(cfg, cache_dir)`` compiles the filter to BPF (libseccomp's ``seccomp_export_bpf``),
cached on disk per profile; ``load(cfg)`` installs it with seccomp(2) (through the native module),
so the container process, already past pivot_root, needs neither cffi's parser nor libseccomp;
``check(cfg)`` validates a configuration at ``create`` time.
"""

from __future__ import annotations

import errno as _errno
import os

from pycontain.runtime.procs import read_from_start

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

_CDEF = """
typedef void *scmp_filter_ctx;
typedef uint64_t scmp_datum_t;
struct scmp_arg_cmp {
    unsigned int arg;
    int op;
    scmp_datum_t datum_a;
    scmp_datum_t datum_b;
};
scmp_filter_ctx seccomp_init(uint32_t def_action);
void seccomp_release(scmp_filter_ctx ctx);
uint32_t seccomp_arch_resolve_name(const char *arch_name);
uint32_t seccomp_arch_native(void);
int seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch_token);
int seccomp_syscall_resolve_name(const char *name);
int seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
                           unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
int seccomp_attr_set(scmp_filter_ctx ctx, int attr, uint32_t value);
int seccomp_load(const scmp_filter_ctx ctx);
int seccomp_export_bpf(const scmp_filter_ctx ctx, int fd);
const struct scmp_version { unsigned int major; unsigned int minor; unsigned int micro; }
    *seccomp_version(void);
"""

ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_ERRNO = 0x00050000
ACT_TRACE = 0x7FF00000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000

_ACTIONS = {
    "SCMP_ACT_KILL": ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": ACT_TRAP,
    "SCMP_ACT_ERRNO": ACT_ERRNO,
    "SCMP_ACT_TRACE": ACT_TRACE,
    "SCMP_ACT_LOG": ACT_LOG,
    "SCMP_ACT_ALLOW": ACT_ALLOW,
}
_OPS = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}  # fmt: skip
_ATTR_CTL_NNP = 3
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_FLAGS = {"SECCOMP_FILTER_FLAG_LOG": _ATTR_CTL_LOG, "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _ATTR_CTL_SSB,
          "SECCOMP_FILTER_FLAG_TSYNC": None}
ACTIONS = sorted(_ACTIONS)
OPERATORS = sorted(_OPS)
ARCHES = ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
          "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
          "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
          "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
          "SCMP_ARCH_RISCV64"]


class SeccompError(RuntimeError):
    pass


_LIB: Any = None
_FFI: Any = None


def _lib() -> Tuple[Any, Any]:
    global _LIB, _FFI
    if _LIB is None:
        from cffi import FFI

        ffi = FFI()
        ffi.cdef(_CDEF)
        try:
            _LIB = ffi.dlopen("libseccomp.so.2")
        except OSError as e:
            raise SeccompError(f"seccomp requested but libseccomp.so.2 is not available ({e}); "
                               "install the libseccomp2 package") from None
        _FFI = ffi
    return _FFI, _LIB


def available() -> bool:
    try:
        _lib()
        return True
    except SeccompError:
        return False


def version() -> str:
    try:
        _, lib = _lib()
    except SeccompError:
        return ""
    v = lib.seccomp_version()
    return f"{v.major}.{v.minor}.{v.micro}"


def _action(name: str, errno_ret: Optional[int]) -> int:
    if name == "SCMP_ACT_NOTIFY":
        raise SeccompError("seccomp action SCMP_ACT_NOTIFY is not supported")
    if name not in _ACTIONS:
        raise SeccompError(f"unknown seccomp action {name!r}")
    base = _ACTIONS[name]
    if base == ACT_ERRNO:
        return base | ((_errno.EPERM if errno_ret is None else int(errno_ret)) & 0xFFFF)
    if base == ACT_TRACE:
        return base | ((_errno.EPERM if errno_ret is None else int(errno_ret)) & 0xFFFF)
    return base


def _arch_name(name: str) -> str:
    if not name.startswith("SCMP_ARCH_"):
        raise SeccompError(f"unknown seccomp architecture {name!r}")
    return name[len("SCMP_ARCH_"):].lower()


def _rules(cfg: Dict[str, Any]) -> List[Tuple[int, List[str], List[List[Any]]]]:
    """(action, names, [conditions per rule]) for every entry of ``syscalls``."""
    out = []
    for entry in cfg.get("syscalls") or []:
        names = list(entry.get("names") or [])
        if entry.get("name"):
            names.append(entry["name"])
        act = _action(entry.get("action", ""), entry.get("errnoRet"))
        conds = []
        for a in entry.get("args") or []:
            op = a.get("op", "")
            if op not in _OPS:
                raise SeccompError(f"unknown seccomp operator {op!r}")
            idx = int(a.get("index", 0))
            if not 0 <= idx < 6:
                raise SeccompError(f"seccomp argument index {idx} out of range")
            conds.append((idx, _OPS[op], int(a.get("value", 0)), int(a.get("valueTwo", 0))))
        indices = [c[0] for c in conds]
        if len(set(indices)) != len(indices):
            groups = [[c] for c in conds]  # same argument twice: OR (one rule each)
        else:
            groups = [conds]
        out.append((act, names, groups))
    return out


def check(cfg: Dict[str, Any]) -> List[str]:
    """Validate ``cfg`` (raising SeccompError); returns warnings (e.g. unknown flags)."""
    warnings = []
    _action(cfg.get("defaultAction", ""), cfg.get("defaultErrnoRet"))
    for a in cfg.get("architectures") or []:
        _arch_name(a)
    for f in cfg.get("flags") or []:
        if f not in _FLAGS:
            warnings.append(f"seccomp flag {f} is not supported (ignored)")
    if cfg.get("listenerPath"):
        raise SeccompError("seccomp listenerPath (SCMP_ACT_NOTIFY) is not supported")
    _rules(cfg)
    return warnings


_FILTER_FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
                 "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}


def compile_bpf(cfg: Dict[str, Any]) -> bytes:
    """Build the filter with libseccomp and return its BPF program (struct sock_filter[])."""
    ffi, lib = _lib()
    default = _action(cfg.get("defaultAction", ""), cfg.get("defaultErrnoRet"))
    ctx = lib.seccomp_init(default)
    if ctx == ffi.NULL:
        raise SeccompError("seccomp_init failed")
    try:
        lib.seccomp_attr_set(ctx, _ATTR_CTL_NNP, 0)
        for a in cfg.get("architectures") or []:
            token = lib.seccomp_arch_resolve_name(_arch_name(a).encode())
            if token == 0:
                continue  # unknown to this libseccomp
            rc = lib.seccomp_arch_add(ctx, token)
            if rc < 0 and rc != -_errno.EEXIST:
                raise SeccompError(f"seccomp_arch_add({a}): {abs(rc)}")
        for act, names, groups in _rules(cfg):
            if act == default:
                continue
            for name in names:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr == -1:  # __NR_SCMP_ERROR: not a syscall here
                    continue
                for conds in groups:
                    arr = ffi.new("struct scmp_arg_cmp[]", max(len(conds), 1))
                    for i, (idx, op, va, vb) in enumerate(conds):
                        arr[i].arg, arr[i].op = idx, op
                        arr[i].datum_a, arr[i].datum_b = va & (2**64 - 1), vb & (2**64 - 1)
                    rc = lib.seccomp_rule_add_array(ctx, act, nr, len(conds), arr)
                    if rc < 0:
                        raise SeccompError(f"seccomp rule for {name} rejected: "
                                           f"{_errno.errorcode.get(-rc, -rc)}")
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            rc = lib.seccomp_export_bpf(ctx, fd)
            if rc < 0:
                raise SeccompError(f"seccomp_export_bpf: {_errno.errorcode.get(-rc, -rc)}")
            return read_from_start(fd)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)


def _flags(cfg: Dict[str, Any]) -> int:
    flags = 0
    for f in cfg.get("flags") or []:
        flags |= _FILTER_FLAGS.get(f, 0) if f != "SECCOMP_FILTER_FLAG_TSYNC" else 0
    return flags


# Programs prepared in the parent (before fork): the child, past pivot_root, only loads bytes.
_PREPARED: Dict[str, bytes] = {}


def _sha256_hex(data: bytes) -> str:
    try:  # CPython's own SHA-256: hashlib would load OpenSSL first (~3 ms of every create)
        from _sha256 import sha256  # type: ignore[import-not-found]
    except ImportError:  # other interpreters; 3.12 renamed it _sha2
        from hashlib import sha256
    return str(sha256(data).hexdigest())


def _key(cfg: Dict[str, Any]) -> str:
    from pycontain import jsonfast as json

    raw = json.dumps(cfg, sort_keys=True, separators=(",", ":"))
    return _sha256_hex(f"{_lib_id()}|{os.uname().machine}|{raw}".encode())


_LIB_ID: List[str] = []


def _lib_id() -> str:
    """Which libseccomp would compile the filter (path, size, mtime), without loading it;
    computed once (in the parent: the container process no longer sees the host's /lib)."""
    if not _LIB_ID:
        _LIB_ID.append(_find_lib_id())
    return _LIB_ID[0]


def _candidates() -> List[str]:
    """Where the dynamic loader would find libseccomp.so.2: the multiarch dirs of /lib and
    /usr/lib (/lib/*/ and /usr/lib/*/), then the flat ones (no glob: it imports re)."""
    out = []
    for top in ("/lib", "/usr/lib"):
        try:
            subs = sorted(e.name for e in os.scandir(top) if e.is_dir())
        except OSError:
            continue
        out += [os.path.join(top, d, "libseccomp.so.2") for d in subs]
    flat = ["/usr/lib64", "/lib64", "/usr/lib", "/usr/local/lib"]
    return [*out, *(os.path.join(d, "libseccomp.so.2") for d in flat)]


def _find_lib_id() -> str:
    for path in _candidates():
        try:
            real = os.path.realpath(path)
            st = os.stat(real)
        except OSError:
            continue
        return f"{real}:{st.st_size}:{st.st_mtime_ns}"
    return "unknown"


def prepare(cfg: Dict[str, Any], cache_dir: Optional[str] = None) -> bytes:
    """The BPF program for ``cfg``: from memory, from ``cache_dir`` (one file per profile and
    libseccomp version: engines send the same profile every time, and compiling it costs tens
    of milliseconds), or compiled now (and stored there)."""
    key = _key(cfg)
    if key in _PREPARED:
        return _PREPARED[key]
    path = os.path.join(cache_dir, key + ".bpf") if cache_dir else None
    prog = b""
    if path is not None:
        try:
            with open(path, "rb") as f:
                prog = f.read()
        except OSError:
            prog = b""
    if not prog or len(prog) % 8:
        prog = compile_bpf(cfg)
        if path is not None:
            try:
                os.makedirs(cache_dir or ".", mode=0o700, exist_ok=True)
                tmp = f"{path}.{os.getpid()}"
                with open(tmp, "wb") as f:
                    f.write(prog)
                os.replace(tmp, path)
            except OSError:
                pass
    _PREPARED[key] = prog
    return prog


def load(cfg: Dict[str, Any]) -> None:
    """Load the filter for ``cfg`` into this process (prepared beforehand when possible).
    no_new_privs is the caller's business: without it, loading needs CAP_SYS_ADMIN, as in runc."""
    from pycontain.runtime import _sys

    prog = prepare(cfg)
    try:
        _sys.seccomp_load_bpf(prog, _flags(cfg))
    except OSError as e:
        raise SeccompError(f"cannot load the seccomp filter: {e.strerror}") from None
