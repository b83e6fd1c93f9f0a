"""Arguments as users give them: sizes ("64M"), CPU counts, signals ("TERM"), volumes
("SRC:DST[:ro]") and environment lists ("K=V", or "K" to pass the caller's value), checked
and turned into what the runtime uses; a bad value raises ContainerError naming it."""

from __future__ import annotations

import os

from pycontain.defaults import DEFAULT_PATH
from pycontain.errors import ContainerError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence, Tuple, Union

    from pycontain.runtime.spec import Mount

    Size = Union[int, str, None]

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(value: Size, what: str = "size") -> Optional[int]:
    """'64M', '1g', '512k', '100' (bytes) or an int -> bytes; else raises ContainerError."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ContainerError(f"invalid {what}: {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ContainerError(f"invalid {what}: {value} (must be positive)")
        return value
    # NUMBER[.FRACTION] [k|m|g|t|p][b|ib], case-insensitive (no regex: `re` costs CLI start-up)
    text = str(value).strip().lower()
    for suffix in ("ib", "b"):
        if text.endswith(suffix) and len(text) > len(suffix) and text[-len(suffix) - 1] in (
                "kmgtp" if suffix == "ib" else "kmgtp0123456789"):
            text = text[: -len(suffix)]
            break
    unit = text[-1:] if text[-1:] in _UNITS and text[-1:] else ""
    number = text[: len(text) - len(unit)].rstrip()
    whole, dot, frac = number.partition(".")
    digits = whole + frac
    if not (whole.isdigit() and digits.isdigit() and digits.isascii() and (frac or not dot)):
        raise ContainerError(f"invalid {what}: {value!r} (expected e.g. 64M, 512k, 1G)")
    n = int(float(number) * _UNITS[unit])
    if n <= 0:
        raise ContainerError(f"invalid {what}: {value!r} (must be positive)")
    return n


# docker's floor: below it the kernel kills a container before its first instruction
MIN_MEMORY = 6 << 20


def memory_limit(value: Size, what: str = "memory") -> Optional[int]:
    """A memory limit (parse_size), at least MIN_MEMORY as docker requires."""
    n = parse_size(value, f"{what} size")
    if n is not None and n < MIN_MEMORY:
        raise ContainerError(f"invalid {what} limit {value!r}: the minimum is 6MiB")
    return n


def host_cpus() -> int:
    """CPUs this process may run on (its affinity mask, as nproc counts them)."""
    try:
        return len(os.sched_getaffinity(0))
    except OSError:  # pragma: no cover
        return os.cpu_count() or 1


def parse_cpus(value: Union[float, str, None]) -> Optional[float]:
    if value is None:
        return None
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        raise ContainerError(f"invalid --cpus value: {value!r}") from None
    if not cpus > 0:
        raise ContainerError(f"invalid --cpus value: {value!r} (must be > 0)")
    n = host_cpus()
    if cpus > n:
        raise ContainerError(f"invalid --cpus value: {value!r} (the range is 0.01 to {n}: "
                             f"this machine has {n} CPUs)")
    return cpus


def size_or_unlimited(value: Size, what: str, memory: bool = False) -> int:
    """parse_size (memory_limit with ``memory``), or -1 (unlimited) for -1 / "-1" /
    "unlimited" / "max"."""
    if isinstance(value, str) and value.strip().lower() in ("-1", "unlimited", "max"):
        return -1
    if isinstance(value, int) and not isinstance(value, bool) and value == -1:
        return -1
    if memory:
        return int(memory_limit(value, what) or 0)
    return int(parse_size(value, what) or 0)


def int_arg(value: Union[int, str], what: str) -> int:
    """An integer argument; -1, "unlimited" or "max" mean unlimited (-1)."""
    if isinstance(value, str) and value.strip().lower() in ("unlimited", "max"):
        return -1
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ContainerError(f"invalid {what}: {value!r} (expected an integer)") from None
    if n == 0 or n < -1:
        raise ContainerError(f"invalid {what}: {value!r} (a positive number, or -1)")
    return n


def cpus_arg(value: Union[float, str]) -> float:
    """update's cpus: a number of CPUs, 0 for no limit."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
        return 0.0
    if isinstance(value, str) and value.strip() in ("0", "0.0"):
        return 0.0
    return float(parse_cpus(value) or 0.0)


def parse_volume(spec: str) -> Mount:
    from pycontain.runtime.spec import Mount

    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ContainerError(f"invalid volume {spec!r} (expected SRC:DST[:ro])")
    src, dst = os.path.abspath(parts[0]), parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise ContainerError(f"invalid volume mode {mode!r} in {spec!r} (ro or rw)")
    if not dst.startswith("/"):
        raise ContainerError(f"volume destination must be absolute: {dst!r}")
    if not os.path.exists(src):
        raise ContainerError(f"volume source does not exist: {src}")
    return Mount(dst, "bind", src, ["rbind", mode, "rprivate"])



def parse_signal(sig: Union[int, str]) -> int:
    if isinstance(sig, int):
        return sig
    text = sig.strip().upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    import signal as signals  # the enum of names: only for a signal given by name

    try:
        return int(signals.Signals[text])
    except KeyError:
        raise ContainerError(f"invalid signal {sig!r}") from None



def build_env(image_env: Sequence[str], hostname: str,
               extra: Union[Sequence[str], Dict[str, str], None]) -> List[str]:
    env: Dict[str, str] = {"PATH": DEFAULT_PATH}
    for item in image_env:
        k, _, v = item.partition("=")
        env[k] = v
    env["HOSTNAME"] = hostname
    env["TERM"] = os.environ.get("TERM") or "xterm"
    items: List[Tuple[str, Optional[str]]] = []
    if isinstance(extra, dict):
        items = [(k, v) for k, v in extra.items()]
    elif extra:
        for item in extra:
            k, sep, v = item.partition("=")
            items.append((k, v if sep else None))
    for k, maybe in items:
        if not k:
            raise ContainerError(f"invalid environment variable {k!r}")
        if maybe is None:
            if k in os.environ:
                env[k] = os.environ[k]
            continue
        env[k] = maybe
    return [f"{k}={v}" for k, v in env.items()]



def merge_env(base: List[str], extra: Union[Sequence[str], Dict[str, str], None]) -> List[str]:
    env: Dict[str, str] = {}
    for item in base:
        k, _, v = item.partition("=")
        env[k] = v
    if isinstance(extra, dict):
        env.update(extra)
    elif extra:
        for item in extra:
            k, sep, v = item.partition("=")
            if sep:
                env[k] = v
            elif k in os.environ:
                env[k] = os.environ[k]
    return [f"{k}={v}" for k, v in env.items()]

