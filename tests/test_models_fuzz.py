"""Fuzzing the safetensors header parser (issue 13): whatever the bytes, the answer is a header
or a ModelFileError naming the file, within a time budget per input; and for headers that
pass the size bounds, it accepts exactly what safetensors itself accepts, so a file the scan
calls fine does not fail later inside a loader.

The normal run tries a few hundred inputs in a few seconds; `-m slow` tries many more.
"""

from __future__ import annotations

import json
import math
import struct
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ldstudio.core.models import ModelFileError, inspect_file, read_safetensors_header
from ldstudio.core.models import safetensors as headers

# The budget per input: the 2 s, which every input must meet on the shared machine.
BUDGET = timedelta(seconds=2)
FAST = settings(
    max_examples=150,
    deadline=BUDGET,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SLOW = settings(FAST, max_examples=3000)

DTYPES = sorted(headers._DTYPE_BITS)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(DTYPES)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def valid_header(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    """A header safetensors writes: contiguous tensors in any key order, text metadata."""
    tensors: dict[str, Any] = {}
    offset = 0
    for _ in range(draw(st.integers(0, 5))):
        dtype = draw(st.sampled_from(DTYPES))
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        bits = headers._DTYPE_BITS[dtype] * math.prod(shape)
        if bits % 8:
            shape.append(4)  # packed 4- and 6-bit dtypes fill whole bytes in fours
            bits *= 4
        name = draw(st.text(min_size=1, max_size=8).filter(lambda n: n != "__metadata__"))
        tensors[name] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [offset, offset + bits // 8],
        }
        offset += bits // 8
    order = draw(st.permutations(list(tensors)))
    header: dict[str, Any] = {name: tensors[name] for name in order}
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(st.text(max_size=5), st.text(max_size=8)))
    return header, offset


@st.composite
def damaged_header(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(header bytes, data bytes): a valid header with one thing changed, or none."""
    header, size = draw(valid_header())
    tensors = [k for k in header if k != "__metadata__"]
    change = draw(
        st.sampled_from(
            [
                "none",
                "field",
                "dtype",
                "shift",
                "drop field",
                "entry",
                "metadata",
                "data size",
                "deep",
                "number",
            ]
        )
    )
    if change == "field" and tensors:
        name = draw(st.sampled_from(tensors))
        field = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
        header[name][field] = draw(JSON)
    elif change == "dtype" and tensors:
        name = draw(st.sampled_from(tensors))
        header[name]["dtype"] = draw(st.sampled_from(DTYPES) | st.text(max_size=4))
    elif change == "shift" and tensors:
        name = draw(st.sampled_from(tensors))
        shift = draw(st.integers(-3, 3))
        header[name]["data_offsets"] = [max(0, n + shift) for n in header[name]["data_offsets"]]
    elif change == "drop field" and tensors:
        name = draw(st.sampled_from(tensors))
        del header[name][draw(st.sampled_from(["dtype", "shape", "data_offsets"]))]
    elif change == "entry":
        header[draw(st.text(max_size=5))] = draw(JSON)
    elif change == "metadata":
        header["__metadata__"] = draw(JSON)
    elif change == "data size":
        size = max(0, size + draw(st.integers(-3, 3)))
    raw = json.dumps(header).encode()
    if change == "deep":
        depth = draw(st.integers(1, 50_000))
        raw = b'{"a":' + b"[" * depth + b"]" * depth + b"}"
    elif change == "number":
        raw = raw.replace(b"0", b"9" * draw(st.integers(1, 6000)), 1)
    return raw, b"\0" * size


def _file(content: bytes) -> Path:
    with tempfile.NamedTemporaryFile(suffix=".safetensors", delete=False) as handle:
        handle.write(content)
    return Path(handle.name)


def parse_or_refuse(path: Path) -> headers.SafetensorsHeader | None:
    """The documented outcomes only: a header, or a ModelFileError naming the file."""
    try:
        header = read_safetensors_header(path)
    except ModelFileError as exc:
        assert str(exc).startswith(f"{path}: "), exc
        header = None
    entry = inspect_file(path)  # never raises; says the same
    assert (entry.status == "error") == (header is None)
    return header


def safetensors_accepts(path: Path) -> bool:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as opened:
            opened.keys()
    except SafetensorError:
        return False
    return True


def check_bytes(content: bytes) -> None:
    path = _file(content)
    try:
        parse_or_refuse(path)
    finally:
        path.unlink()


def check_against_safetensors(case: tuple[bytes, bytes]) -> None:
    raw, data = case
    path = _file(struct.pack("<Q", len(raw)) + raw + data)
    try:
        ours = parse_or_refuse(path) is not None
        assert ours == safetensors_accepts(path), (ours, raw[:300])
    finally:
        path.unlink()


@st.composite
def any_bytes(draw: st.DrawFn) -> bytes:
    """Arbitrary bytes, or a JSON-ish header behind a length prefix that may lie."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=512))
    raw = draw(st.binary(max_size=256) | JSON.map(lambda v: json.dumps(v).encode()))
    length = draw(
        st.integers(-4, 4).map(lambda lie: max(0, len(raw) + lie))
        | st.sampled_from([2**63, 2**64 - 1, headers.MAX_HEADER_BYTES + 1])
    )
    return struct.pack("<Q", length) + raw + draw(st.binary(max_size=16))


ANY_BYTES = any_bytes()


@FAST
@given(ANY_BYTES)
def test_any_bytes_give_a_header_or_a_named_error(content: bytes) -> None:
    check_bytes(content)


@FAST
@given(damaged_header())
def test_accepts_exactly_what_safetensors_accepts(case: tuple[bytes, bytes]) -> None:
    check_against_safetensors(case)


@pytest.mark.slow
@SLOW
@given(ANY_BYTES)
def test_any_bytes_long_run(content: bytes) -> None:
    check_bytes(content)


@pytest.mark.slow
@SLOW
@given(damaged_header())
def test_accepts_exactly_what_safetensors_accepts_long_run(case: tuple[bytes, bytes]) -> None:
    check_against_safetensors(case)
