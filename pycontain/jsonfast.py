"""``loads``/``dumps`` on the standard library's own C accelerator (``_json``), without
importing the ``json`` package.

The ``json`` package imports ``re`` when it loads (for its whitespace and string patterns), and
``re`` brings in ``enum``, ``functools`` and ``collections``: about 5 ms of a command's start,
paid by every ``pycontain`` and ``pycontain-oci`` call. The C scanner and encoder need none of
that. This module drives them directly with the same settings ``json.loads`` and ``json.dumps``
use by default (strict; ``NaN`` and ``Infinity`` refused on input), so the results are the
same. ``indent`` is laid out here, the scalars still written by the C encoder. Errors are
``ValueError``, as with ``json``.
"""

from __future__ import annotations

import _json  # CPython's json accelerator (every CPython has it; cffi needs CPython anyway)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any, Callable, List, Optional

_WS = " \t\n\r"


def _constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


class _Context:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_constant)


_scan: Callable[[str, int], Any] = _json.make_scanner(_Context())


def loads(text: Any) -> Any:
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8-sig" if text[:3] == b"\xef\xbb\xbf" else "utf-8")
    end = len(text.rstrip(_WS))
    start = len(text) - len(text.lstrip(_WS))
    try:
        obj, idx = _scan(text, start)
    except StopIteration as e:
        raise ValueError(f"invalid JSON at character {e.value}") from None
    if idx != end:
        raise ValueError(f"extra data in JSON at character {idx}")
    return obj


def load(f: IO[Any]) -> Any:
    return loads(f.read())


def _no_default(o: Any) -> Any:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def dumps(obj: Any, sort_keys: bool = False, separators: Optional[tuple] = None,
          indent: Any = None, default: Optional[Callable[[Any], Any]] = None) -> str:
    """``json.dumps(obj, ...)`` with the same output: ASCII, NaN and Infinity written as json
    writes them, ``indent`` as an int or a string."""
    if indent is None:
        item, key = separators or (", ", ": ")
    else:
        item, key = separators or (",", ": ")
    enc = _json.make_encoder({}, default or _no_default, _json.encode_basestring_ascii, None,
                             key, item, sort_keys, False, True)
    if indent is None:
        return "".join(enc(obj, 0))
    step = " " * indent if isinstance(indent, int) else str(indent)
    out: List[str] = []
    _pretty(obj, enc, step, "\n", item, key, sort_keys, default, out, set())
    return "".join(out)


def _pretty(o: Any, enc: Any, step: str, nl: str, item: str, key: str, sort_keys: bool,
            default: Optional[Callable[[Any], Any]], out: List[str], seen: set) -> None:
    """The indented layout json's pure-Python encoder writes; scalars through the C encoder."""
    if isinstance(o, (list, tuple)):
        if not o:
            out.append("[]")
            return
        _enter(o, seen)
        inner = nl + step
        out.append("[")
        for i, v in enumerate(o):
            out.append(inner if i == 0 else item + inner)
            _pretty(v, enc, step, inner, item, key, sort_keys, default, out, seen)
        out.append(nl + "]")
        seen.discard(id(o))
    elif isinstance(o, dict):
        if not o:
            out.append("{}")
            return
        _enter(o, seen)
        inner = nl + step
        out.append("{")
        pairs = o.items()
        if sort_keys:
            pairs = sorted(pairs)
        for i, (k, v) in enumerate(pairs):
            out.append(inner if i == 0 else item + inner)
            if isinstance(k, str):
                out.append(_json.encode_basestring_ascii(k))
            else:  # what json accepts as keys: numbers, booleans, None
                ks = "".join(enc(k, 0))
                if not isinstance(k, (int, float)) and k is not None:
                    raise TypeError(f"keys must be str, int, float, bool or None, "
                                    f"not {type(k).__name__}")
                out.append(ks if ks.startswith('"') else '"' + ks + '"')
            out.append(key)
            _pretty(v, enc, step, inner, item, key, sort_keys, default, out, seen)
        out.append(nl + "}")
        seen.discard(id(o))
    elif default is not None and not isinstance(o, (str, int, float, bool, type(None))):
        _pretty(default(o), enc, step, nl, item, key, sort_keys, default, out, seen)
    else:
        out.append("".join(enc(o, 0)))


def _enter(o: Any, seen: set) -> None:
    if id(o) in seen:
        raise ValueError("Circular reference detected")
    seen.add(id(o))


def dump(obj: Any, f: IO[str], **kw: Any) -> None:
    f.write(dumps(obj, **kw))
