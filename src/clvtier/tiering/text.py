"""Text built from a template and columns of numbers, vectorised in numpy.

``format_rows(template, columns)`` gives ``template.format(*row)`` for every row, byte for byte,
without a Python call per row. Fields are ``{}`` with the fixed-point specs reasons use,
``.Nf`` and ``,.Nf``.

Each number column is laid out right-aligned in a byte matrix with one row per row of text, next
to a length per row; its rows' bytes with the padding masked out are the data buffer of an Arrow
string array, and Arrow joins those arrays and the literal text row by row. A number is
rounded in numpy (``rint`` of ``|x| * 10**N``); where that product lies too close to a rounding
boundary for a double to decide, or at 2**52 or beyond, or is not finite, the number's text comes
from Python's own ``format``, so every result is Python's.
"""

from __future__ import annotations

import re
import string

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_SPEC = re.compile(r"(,?)\.(\d)f")
#: Largest product ``|x| * 10**N`` rounded in numpy: integers are exact in a double below 2**52.
_EXACT = 2.0**52
_POWERS = 10 ** np.arange(1, 19, dtype=np.int64)


def format_rows(template: str, columns: list[np.ndarray], n: int | None = None) -> pa.Array:
    """``template.format(*row)`` for each row of ``columns``, as an Arrow large string array;
    ``n`` rows (default: the columns' length, else 0)."""
    n = n if n is not None else len(columns[0]) if columns else 0
    pieces, i = [], 0
    for literal, name, spec, conversion in string.Formatter().parse(template):
        if literal:
            pieces.append(pa.scalar(literal, pa.large_string()))
        if name is None:
            continue
        if name != "" or conversion or not _SPEC.fullmatch(spec or ""):
            raise ValueError(f"format_rows supports {{:.Nf}} and {{:,.Nf}} fields only; got {template!r}")
        pieces.append(fixed(columns[i], spec))
        i += 1
    if i == 0:  # literal text only
        return pa.repeat(pa.scalar("".join(p.as_py() for p in pieces), pa.large_string()), n)
    if len(pieces) == 1:
        return pieces[0]
    return pc.binary_join_element_wise(*pieces, pa.scalar("", pa.large_string()))


def fixed(values, spec: str) -> pa.Array:
    """``format(x, spec)`` for each ``x`` (``spec`` ``.Nf`` or ``,.Nf``), as an Arrow large
    string array."""
    x = np.asarray(values, dtype=np.float64)
    return _strings(*_fixed(x, spec))


def _fixed(x: np.ndarray, spec: str) -> tuple[np.ndarray, np.ndarray]:
    """The bytes of ``format(v, spec)`` for each ``v`` of ``x``, right-aligned, and their lengths."""
    comma, digits = _SPEC.fullmatch(spec).groups()
    places = int(digits)
    with np.errstate(invalid="ignore", over="ignore"):
        y = np.abs(x) * 10.0**places
        # the double product is within half a unit in the last place of the exact one: rint
        # rounds it as Python would unless it lies that close to a half
        slow = ~(y < _EXACT) | (np.abs(y - np.floor(y) - 0.5) <= 2 * np.spacing(y))
    units = np.where(slow, 0.0, np.rint(y)).astype(np.int64)
    whole, fraction = np.divmod(units, 10**places)
    count = np.searchsorted(_POWERS, whole, side="right") + 1  # digits of the whole part
    most = int(count.max(initial=1))

    def at(k):  # position of the whole part's k-th digit from the right
        return k + k // 3 if comma else k

    tail = places + 1 if places else 0  # "." and the fraction
    width = 1 + at(most - 1) + 1 + tail  # a sign, the whole part, the fraction
    out = np.zeros((len(x), width), dtype=np.uint8)
    right = width - 1 - tail  # column of the whole part's last digit
    for k in range(places):
        out[:, width - 1 - k] = 48 + fraction // 10**k % 10
    if places:
        out[:, right + 1] = ord(".")
    rest = whole
    for k in range(most):
        out[:, right - at(k)] = 48 + rest % 10
        rest = rest // 10
        if comma and k and k % 3 == 0:
            out[:, right - at(k) + 1] = ord(",")
    length = at(count - 1) + 1 + tail
    negative = np.signbit(x)
    out[negative, width - 1 - length[negative]] = ord("-")
    length = length + negative
    if slow.any():  # Python's own text for the few numbers numpy cannot round
        rows = np.flatnonzero(slow)
        text = [format(v, spec).encode() for v in x[rows].tolist()]
        grow = max(map(len, text)) - width
        if grow > 0:
            out = np.concatenate([np.zeros((len(x), grow), dtype=np.uint8), out], axis=1)
        for row, t in zip(rows, text, strict=True):
            out[row, out.shape[1] - len(t):] = np.frombuffer(t, dtype=np.uint8)
            length[row] = len(t)
    return out, length


def _strings(matrix: np.ndarray, length: np.ndarray) -> pa.Array:
    """An Arrow large string array of each row's last ``length`` bytes of ``matrix``."""
    n, width = matrix.shape
    data = matrix[np.arange(width) >= width - length[:, None]]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(length, out=offsets[1:])
    return pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


__all__ = ["fixed", "format_rows"]
