"""Tests of gradcheck.wire: round trips, markers for what cannot travel, and fuzzing."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gradcheck import wire
from gradcheck.wire import ArraySubclass, Ref, Unsupported, WireError, decode, encode

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

DTYPES = ["bool", "int8", "int32", "int64", "uint8", "uint64", "float16", "float32", "float64",
          "complex64", "complex128"]

arrays = st.sampled_from(DTYPES).flatmap(
    lambda dtype: hnp.arrays(np.dtype(dtype), hnp.array_shapes(min_dims=0, max_dims=3,
                                                               min_side=0, max_side=4))
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.complex_numbers(), st.text(),
)
values = st.recursive(
    st.one_of(scalars, arrays),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=5), inner, max_size=4),
    ),
    max_leaves=12,
)


def same(a: object, b: object) -> bool:
    """Structural equality where NaN equals NaN and arrays must match dtype and shape."""
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, complex):
        return isinstance(b, complex) and same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=200, deadline=None)
@given(values)
def test_round_trip_keeps_structure_types_and_dtypes(value: object) -> None:
    assert same(value, decode(encode(value)))


@given(st.sampled_from(DTYPES), st.integers(0, 3))
def test_numpy_scalars_keep_their_dtype(dtype: str, raw: int) -> None:
    scalar = np.array(raw).astype(dtype)[()]
    out = decode(encode(scalar))
    assert type(out) is type(scalar) and out.dtype == scalar.dtype and out == scalar


def test_zero_d_and_big_endian_arrays() -> None:
    zero_d = decode(encode(np.array(2.5)))
    assert zero_d.shape == () and zero_d == 2.5
    big = decode(encode(np.arange(3, dtype=">i4")))
    assert big.dtype == np.dtype("int32") and big.tolist() == [0, 1, 2]


def test_decoded_arrays_are_writeable_copies() -> None:
    out = decode(encode(np.zeros(3)))
    out[0] = 1.0
    assert out.flags.owndata and out[0] == 1.0


def test_array_subclasses_arrive_as_flagged_base_arrays() -> None:
    matrix = decode(encode(np.matrix([[1.0, 2.0]])))
    assert isinstance(matrix, ArraySubclass) and matrix.type_name == "numpy.matrix"
    assert type(matrix.array) is np.ndarray and matrix.array.shape == (1, 2)
    masked = decode(encode(np.ma.masked_array([1, 2], mask=[0, 1])))
    assert masked.type_name == "numpy.ma.MaskedArray" and masked.array.tolist() == [1, 2]


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ({1, 2}, "set"),
        (np.array([1, "a"], dtype=object), "numpy.ndarray"),
        (lambda: 0, "function"),
        ((i for i in range(3)), "generator"),
        ({1: 2.0}, "dict"),
        (object(), "object"),
        (10**5000, "int"),
    ],
    ids=["set", "object-array", "function", "generator", "int-keys", "object", "huge-int"],
)
def test_unrepresentable_values_become_markers(value: object, type_name: str) -> None:
    out = decode(encode({"grads": value}))["grads"]
    assert isinstance(out, Unsupported) and out.type_name == type_name and out.summary


def test_markers_and_refs_round_trip() -> None:
    value = [Ref("cache"), Unsupported("set", "{1}")]
    assert decode(encode(value)) == value


def test_a_bad_repr_does_not_break_encoding() -> None:
    class Nasty:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    out = decode(encode(Nasty()))
    assert isinstance(out, Unsupported) and "repr raised RuntimeError" in out.summary


def test_depth_limit_and_cycles_become_markers() -> None:
    cycle: list[object] = []
    cycle.append(cycle)
    out = decode(encode(cycle, max_depth=5))
    for _ in range(5):
        out = out[0]
    assert isinstance(out, Unsupported) and "deeper" in out.summary


def test_size_limit_turns_big_parts_into_markers() -> None:
    out = decode(encode({"small": np.ones(2), "big": np.ones(10_000)}, max_bytes=4_000))
    assert isinstance(out["big"], Unsupported) and "size limit" in out["big"].summary
    assert out["small"].tolist() == [1.0, 1.0]


def test_strict_mode_raises_instead() -> None:
    with pytest.raises(WireError, match="cannot encode a set"):
        encode({1, 2}, strict=True)


def test_decoding_refuses_over_limit_messages() -> None:
    with pytest.raises(WireError, match="exceeds the limit"):
        decode(encode(np.ones(1000)), max_bytes=100)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GCW1",
        b"XXXX" + struct.pack(">Q", 0),
        b"GCW1" + struct.pack(">Q", 10**12),
        b"GCW1" + struct.pack(">Q", 3) + b"{{{",
        b"GCW1" + struct.pack(">Q", 2) + b"{}",
        b"GCW1" + struct.pack(">Q", 7) + b'["zz",1]',
        b'GCW1\x00\x00\x00\x00\x00\x00\x00\x2f["a",{"dtype":"|O","shape":[1],"at":0,"n":8}]',
        b'GCW1\x00\x00\x00\x00\x00\x00\x00\x30["a",{"dtype":"<f8","shape":[9],"at":0,"n":72}]',
        b"GCW1" + struct.pack(">Q", 20_001) + b"[" * 20_000 + b"1",
    ],
)
def test_malformed_bytes_raise_wire_error(data: bytes) -> None:
    with pytest.raises(WireError):
        decode(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_wire_error(data: bytes) -> None:
    for candidate in (data, b"GCW1" + struct.pack(">Q", len(data)) + data):
        try:
            decode(candidate)
        except WireError:
            pass


@settings(max_examples=300, deadline=None)
@given(values, st.data())
def test_corrupted_messages_only_ever_raise_wire_error(value: object, data: st.DataObject) -> None:
    message = bytearray(encode(value))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(message) - 1))
        message[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(message)))
    for candidate in (bytes(message), bytes(message[:cut])):
        try:
            decode(candidate)
        except WireError:
            pass


def test_type_name_is_qualified() -> None:
    assert wire.type_name(np.matrix([[1]])) == "numpy.matrix"
    assert wire.type_name({1}) == "set"


def test_a_header_over_max_header_is_refused_before_it_is_parsed() -> None:
    header = b'["l",[' + b"0," * 1_000_000 + b"0]]"
    data = struct.pack(">4sQ", b"GCW1", len(header)) + header
    assert len(decode(data)) == 1_000_001  # no limit unless one is asked for
    with pytest.raises(WireError, match="over the limit of 100,000"):
        decode(data, max_header=100_000)


def test_a_list_too_long_for_max_header_becomes_one_marker_and_its_siblings_still_travel() -> None:
    value = {"W1": [0.1] * 1_000_000, "W2": np.ones((1, 2)), "loss": 0.5}
    data = encode(value, max_header=100_000)
    out = decode(data, max_header=100_000)
    assert isinstance(out["W1"], Unsupported) and "list of 1,000,000 items, too long" in out["W1"].summary
    assert out["W2"].tolist() == [[1.0, 1.0]] and out["loss"] == 0.5
    with pytest.raises(WireError, match="over the limit"):
        encode({"text": "\u00e9" * 50_000}, max_header=100_000)  # JSON escapes it: 6 bytes a char
