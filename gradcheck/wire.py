"""Pickle-free encoding of values crossing the process boundary.

The grader must never unpickle bytes written by a student's process, so values travel as a
JSON header (the structure) followed by raw array buffers that are read back with
``np.frombuffer`` on a dtype from a whitelist. Anything the codec cannot represent becomes an
:class:`Unsupported` marker instead of an error, so the grader can say what came back.

Example:
    >>> import numpy as np
    >>> value = {"loss": 0.5, "W1": np.ones((2, 3)), "shape": (2, 3)}
    >>> out = decode(encode(value))
    >>> out["shape"], out["W1"].dtype.name
    ((2, 3), 'float64')
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_HEADER",
    "ArraySubclass",
    "Ref",
    "Unsupported",
    "WireError",
    "decode",
    "encode",
]

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_DEPTH = 64
# The JSON header (the structure; arrays travel as raw buffers after it) of a reply from
# student code. A header of tiny nodes (``[[], [], ...]``) costs the reader up to 20 times
# its size in Python objects: 256 MB of it took a grader 2.3 GB per reply.
DEFAULT_MAX_HEADER = 16 * 1024 * 1024
# What one node costs the header at most (a float's repr and a comma), for the encoder's
# estimate; strings are charged their length, arrays their metadata.
_HEADER_NODE = 26
_HEADER_ARRAY = 96

_MAGIC = b"GCW1"
_PREFIX = struct.Struct(">4sQ")  # magic, header length
_ALIGN = 16
# Every node costs at least this much of the size budget, so that a structure of millions of
# tiny items (or a shared sub-list repeated exponentially) is bounded like a big array.
_NODE_COST = 16
_SUMMARY_CHARS = 200
# Native little- and big-endian spellings are normalised to native order before sending.
_DTYPES = frozenset(
    np.dtype(name).str
    for name in (
        "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64", "complex64", "complex128",
    )
)


class WireError(ValueError):
    """Bytes could not be decoded (malformed, truncated or over a limit), or, with
    ``strict=True``, a value could not be encoded."""


@dataclass(frozen=True)
class Unsupported:
    """Marker for a value the codec cannot carry (a set, a function, an object array...).

    Attributes:
        type_name: Qualified type of the original value, e.g. ``"set"`` or ``"numpy.ndarray"``.
        summary: Short human-readable description (a truncated repr or the reason).
    """

    type_name: str
    summary: str


@dataclass(frozen=True)
class ArraySubclass:
    """An ndarray subclass (``numpy.matrix``, a masked array...) sent as its base ndarray.

    Attributes:
        type_name: Qualified name of the subclass, e.g. ``"numpy.matrix"``.
        array: The data as a plain ``numpy.ndarray`` (masked entries keep their raw data).
    """

    type_name: str
    array: np.ndarray


@dataclass(frozen=True)
class Ref:
    """Reference to a value stored on the other side of the boundary (see isolation).

    Attributes:
        name: The name the value was stored under.
        item: When set, the stored value's ``[item]`` (the cache of a layer's ``(out, cache)``).
    """

    name: str
    item: int | None = None


def encode(
    value: object,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    strict: bool = False,
    max_header: int | None = None,
) -> bytes:
    """Encode ``value`` to bytes without pickle.

    Args:
        value: None, bool, int, float, complex, str, list, tuple, dict with str keys, numeric
            or bool numpy arrays and scalars, :class:`Ref`, :class:`Unsupported`, nested.
        max_bytes: Budget for the whole message; parts beyond it become :class:`Unsupported`.
        max_depth: Nesting limit; deeper parts (or cycles) become :class:`Unsupported`.
        strict: Raise :class:`WireError` instead of producing markers (for trusted callers,
            whose values must all be representable).
        max_header: Budget for the JSON header (the structure, without the array buffers):
            a list or dict that would take it past the budget becomes one marker; None for
            no limit.

    Returns:
        The encoded message.

    Raises:
        WireError: With ``strict=True``; and when the header is over ``max_header`` even so
            (strings that JSON escapes take more than their length).
    """
    encoder = _Encoder(max_bytes=max_bytes, max_depth=max_depth, strict=strict,
                       max_header=max_header)
    tree = encoder.node(value, 0)
    header = json.dumps(tree, separators=(",", ":"), allow_nan=True).encode()
    _check_header(len(header), max_header)
    parts = [_PREFIX.pack(_MAGIC, len(header)), header]
    parts.extend(encoder.blobs)
    return b"".join(parts)


def _check_header(size: int, max_header: int | None) -> None:
    """Refuse a JSON header over ``max_header`` bytes, sent or received."""
    if max_header is not None and size > max_header:
        raise WireError(f"its structure takes {size:,} bytes, over the limit of "
                        f"{max_header:,} (long lists of numbers travel as numpy arrays)")


def decode(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH,
    max_header: int | None = None,
) -> Any:
    """Decode bytes produced by :func:`encode`.

    Arrays come back as fresh, writeable copies that own their memory.

    Args:
        data: The message.
        max_bytes: Messages longer than this are refused.
        max_depth: Deeper structures are refused.
        max_header: Messages whose JSON header is longer than this are refused before it is
            parsed (None: no limit but ``max_bytes``).

    Returns:
        The value.

    Raises:
        WireError: The bytes are malformed, truncated, or over a limit.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError(f"expected bytes, got {type(data).__name__}")
    view = memoryview(data).cast("B")
    if len(view) > max_bytes:
        raise WireError(f"message of {len(view):,} bytes exceeds the limit of {max_bytes:,}")
    if len(view) < _PREFIX.size:
        raise WireError(f"message of {len(view)} bytes is too short to hold a header")
    magic, header_len = _PREFIX.unpack(view[: _PREFIX.size])
    if magic != _MAGIC:
        raise WireError("message does not start with the gradcheck wire marker")
    _check_header(header_len, max_header)
    start = _PREFIX.size + header_len
    if start > len(view):
        raise WireError("message is truncated: the header runs past the end")
    try:
        tree = json.loads(bytes(view[_PREFIX.size : start]).decode("utf-8"))
        return _Decoder(view[start:], max_depth).node(tree, 0)
    except WireError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
        raise WireError(f"malformed message: {type(exc).__name__}: {exc}") from None


def type_name(value: object) -> str:
    """Return the qualified type name used in markers, e.g. ``numpy.matrix`` or ``set``."""
    cls = type(value)
    module = getattr(cls, "__module__", "") or ""
    name = getattr(cls, "__qualname__", cls.__name__)
    if module in ("builtins", ""):
        return name
    if module.startswith("numpy"):
        module = "numpy.ma" if module.startswith("numpy.ma") else "numpy"
    return f"{module}.{name}"


class _Encoder:
    def __init__(self, *, max_bytes: int, max_depth: int, strict: bool,
                 max_header: int | None = None) -> None:
        self.budget = max_bytes - _PREFIX.size
        # Kept below the limit by a margin for the markers that replace what did not fit.
        self.header = math.inf if max_header is None else max_header * 0.9
        self.max_depth = max_depth
        self.strict = strict
        self.blobs: list[bytes] = []
        self.offset = 0

    def node(self, value: object, depth: int) -> Any:
        self.budget -= _NODE_COST
        self.header -= _HEADER_NODE
        if self.budget < 0:
            return self.unsupported(value, "over the size limit of the message")
        if depth >= self.max_depth:
            return self.unsupported(value, f"nested deeper than {self.max_depth} levels")
        # numpy scalars subclass float/int/bool/complex, so they are checked first.
        if isinstance(value, np.generic):
            return self.scalar(value)
        if isinstance(value, np.ndarray):
            return self.array(value)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            return self.integer(value)
        if isinstance(value, float):
            # JSON as written by Python carries NaN and Infinity, and json.loads reads them.
            return float(value)
        if isinstance(value, complex):
            return ["c", float(value.real), float(value.imag)]
        if isinstance(value, str):
            self.budget -= len(value)
            self.header -= str.__len__(value)
            return str(value)
        return self.container(value, depth)

    def integer(self, value: int) -> Any:
        # Python refuses to print or parse ints of more than 4300 digits.
        if value.bit_length() > 10_000:
            return self.unsupported(value, f"int of {value.bit_length()} bits")
        self.budget -= value.bit_length() // 3
        return int(value)

    def container(self, value: object, depth: int) -> Any:
        if isinstance(value, (Ref, Unsupported)):
            tag = "r" if isinstance(value, Ref) else "u"
            if isinstance(value, Ref):
                item = [] if value.item is None else [str(int(value.item))]
                return [tag, str(value.name), *item]
            return [tag, str(value.type_name), str(value.summary)]
        if isinstance(value, ArraySubclass):
            inner = self.array(np.asarray(value.array))
            inner[1]["subclass"] = str(value.type_name)
            return inner
        if isinstance(value, (list, tuple)):
            items = list.__iter__(value) if isinstance(value, list) else tuple.__iter__(value)
            tag = "l" if isinstance(value, list) else "t"
            nodes, start = [], self.header
            for item in items:
                nodes.append(self.node(item, depth + 1))
                if self.header < 0:
                    return self.too_long(value, start)
            return [tag, nodes]
        if isinstance(value, dict):
            return self.mapping(value, depth)
        return self.unsupported(value, _summary(value))

    def mapping(self, value: dict[Any, Any], depth: int) -> Any:
        pairs = list(dict.items(value))
        bad = [key for key, _ in pairs if not isinstance(key, str)]
        if bad:
            return self.unsupported(value, f"dict with a non-str key {_summary(bad[0])}")
        nodes, start = [], self.header
        for key, item in pairs:
            self.header -= str.__len__(key)
            nodes.append([str(key), self.node(item, depth + 1)])
            if self.header < 0:
                return self.too_long(value, start)
        return ["d", nodes]

    def too_long(self, value: object, start: float) -> Any:
        """One marker for a container whose items would take the header over its budget."""
        self.header = start - _HEADER_ARRAY - _SUMMARY_CHARS  # the marker stands for all of it
        size = next((kind.__len__ for kind in (list, tuple, dict) if isinstance(value, kind)), None)
        length = size(value) if size is not None else 0  # the type's own: a subclass's may lie
        return self.unsupported(value, f"{type_name(value)} of {length:,} items, too long to send "
                                       "back (long lists of numbers travel as numpy arrays)")

    def array(self, value: np.ndarray) -> Any:
        subclass = type(value) is not np.ndarray
        # np.ma is imported lazily by numpy (10 ms): only a subclass can be a masked array.
        masked = subclass and isinstance(value, np.ma.MaskedArray)
        base = np.asarray(value.data if masked else value)
        base = base.view(np.ndarray)
        if base.dtype.str not in _DTYPES:
            native = base.dtype.newbyteorder("=")
            if native.str not in _DTYPES:
                return self.unsupported(value, f"array of dtype {base.dtype}, shape {base.shape}")
            base = base.astype(native)
        if base.nbytes > self.budget:
            return self.unsupported(
                value, f"array of {base.nbytes:,} bytes over the size limit of the message"
            )
        self.header -= _HEADER_ARRAY
        meta: dict[str, Any] = {"dtype": base.dtype.str, "shape": list(base.shape)}
        meta["at"], meta["n"] = self.blob(np.ascontiguousarray(base).tobytes())
        if subclass:
            meta["subclass"] = type_name(value)
        return ["a", meta]

    def scalar(self, value: np.generic) -> Any:
        self.header -= _HEADER_ARRAY
        dtype = value.dtype.newbyteorder("=")
        if dtype.str not in _DTYPES:
            return self.unsupported(value, f"numpy scalar of dtype {value.dtype}")
        at, n = self.blob(np.asarray(value, dtype=dtype).tobytes())
        return ["s", {"dtype": dtype.str, "at": at, "n": n}]

    def blob(self, raw: bytes) -> tuple[int, int]:
        pad = -len(raw) % _ALIGN
        self.budget -= len(raw) + pad
        at = self.offset
        self.blobs.append(raw + b"\0" * pad)
        self.offset += len(raw) + pad
        return at, len(raw)

    def unsupported(self, value: object, summary: str) -> Any:
        if self.strict:
            raise WireError(f"cannot encode a {type_name(value)}: {summary}")
        return ["u", type_name(value), summary[:_SUMMARY_CHARS]]


class _Decoder:
    def __init__(self, blobs: memoryview, max_depth: int) -> None:
        self.blobs = blobs
        self.max_depth = max_depth

    def node(self, tree: Any, depth: int) -> Any:
        if depth > self.max_depth:
            raise WireError(f"message nested deeper than {self.max_depth} levels")
        if tree is None or isinstance(tree, (bool, int, float, str)):
            return tree
        if not isinstance(tree, list) or not tree or not isinstance(tree[0], str):
            raise WireError(f"malformed node of type {type(tree).__name__}")
        tag, args = tree[0], tree[1:]
        handler = _HANDLERS.get(tag)
        if handler is None:
            raise WireError(f"unknown node tag {tag[:20]!r}")
        return handler(self, args, depth)

    def sequence(self, args: list[Any], depth: int) -> list[Any]:
        (items,) = _expect(args, 1, list)
        return [self.node(item, depth + 1) for item in items]

    def mapping(self, args: list[Any], depth: int) -> dict[str, Any]:
        (pairs,) = _expect(args, 1, list)
        out: dict[str, Any] = {}
        for pair in pairs:
            key, item = _expect(pair, 2, str, None)
            out[key] = self.node(item, depth + 1)
        return out

    def array(self, args: list[Any], _depth: int) -> np.ndarray | ArraySubclass:
        (meta,) = _expect(args, 1, dict)
        shape = meta.get("shape")
        if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
            raise WireError("malformed array shape")
        dtype = self.dtype(meta)
        raw = self.raw(meta, math.prod(shape) * dtype.itemsize)
        array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        subclass = meta.get("subclass")
        if subclass is None:
            return array
        if not isinstance(subclass, str):
            raise WireError("malformed array subclass name")
        return ArraySubclass(subclass, array)

    def scalar(self, args: list[Any], _depth: int) -> np.generic:
        (meta,) = _expect(args, 1, dict)
        dtype = self.dtype(meta)
        return np.frombuffer(self.raw(meta, dtype.itemsize), dtype=dtype)[0].copy()

    def dtype(self, meta: dict[str, Any]) -> np.dtype[Any]:
        name = meta.get("dtype")
        if not isinstance(name, str) or name not in _DTYPES:
            raise WireError(f"dtype {str(name)[:40]!r} is not allowed")
        return np.dtype(name)

    def raw(self, meta: dict[str, Any], expected: int) -> memoryview:
        at, n = meta.get("at"), meta.get("n")
        if not (_is_count(at) and _is_count(n)) or n != expected:
            raise WireError(f"array buffer declares {n!r} bytes where {expected} are needed")
        if at + n > len(self.blobs):
            raise WireError("message is truncated: an array buffer runs past the end")
        return self.blobs[at : at + n]


def _decode_complex(_decoder: _Decoder, args: list[Any], _depth: int) -> complex:
    real, imag = _expect(args, 2, (int, float), (int, float))
    return complex(float(real), float(imag))


def _expect(args: Any, count: int, *types: Any) -> list[Any]:
    if not isinstance(args, list) or len(args) != count:
        raise WireError(f"malformed node: expected {count} fields")
    for arg, kind in zip(args, types):
        if kind is not None and (isinstance(arg, bool) or not isinstance(arg, kind)):
            raise WireError(f"malformed node: unexpected {type(arg).__name__}")
    return args


def _decode_ref(args: Any) -> Ref:
    if isinstance(args, list) and len(args) == 2:
        name, item = _expect(args, 2, str, str)
        if not item.lstrip("-").isdigit():
            raise WireError("malformed node: a reference's item is not an integer")
        return Ref(name, int(item))
    return Ref(*_expect(args, 1, str))


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62


def _summary(value: object) -> str:
    try:
        text = repr(value)
    except BaseException as exc:  # a student's __repr__ may raise anything
        text = f"<{type_name(value)} whose repr raised {type(exc).__name__}>"
    if not isinstance(text, str):
        text = f"<{type_name(value)}>"
    return text if len(text) <= _SUMMARY_CHARS else text[: _SUMMARY_CHARS - 3] + "..."


_HANDLERS: dict[str, Any] = {
    "l": _Decoder.sequence,
    "t": lambda d, a, depth: tuple(_Decoder.sequence(d, a, depth)),
    "d": _Decoder.mapping,
    "a": _Decoder.array,
    "s": _Decoder.scalar,
    "c": _decode_complex,
    "r": lambda _d, a, _depth: _decode_ref(a),
    "u": lambda _d, a, _depth: Unsupported(*_expect(a, 2, str, str)),
}
