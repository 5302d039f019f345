"""Vectorised reason text (clvtier.tiering.text) is byte for byte Python's str.format."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clvtier.tiering.text import fixed, format_rows

SPECS = (".3f", ",.2f", ".0f", ",.0f", ".2f", ",.6f", ",.1f")
# exact ties (0.125), products that round across a half (1.005, 2.675), signed zeros, values
# around 2**52 / 10**N and 1e15+, non-finite, subnormal, grouping boundaries
EDGES = [0.125, 2.675, 1.005, -0.0, 0.0, -0.001, 0.0005, 0.9995, 999.995, 999.9999, 1000.0, 999999.995,
         1e15, 1e16, -1e17, 4503599627370495.0, 4503599627370496.0, 45035996273704.96, np.nan, np.inf,
         -np.inf, 5e-324, 1234567.125, 0.5, 1.5, 2.5, -2.5, -1234.5678, 1e308, -1e-300]


def _python(values, spec):
    return [format(v, spec) for v in np.asarray(values, dtype=float).tolist()]


@pytest.mark.parametrize("spec", SPECS)
def test_fixed_equals_python_on_edges_and_random_values(spec):
    rng = np.random.default_rng(0)
    values = np.concatenate([EDGES, rng.normal(0, 1, 20_000), rng.lognormal(3, 4, 20_000),
                             np.round(rng.uniform(-1e4, 1e4, 20_000), 3)])
    with np.errstate(over="ignore", invalid="ignore"):  # np.round of 1e308 overflows to inf
        values = np.concatenate([values, np.round(values, 2) + 0.005, np.round(values, 3) + 0.0005])
    assert fixed(values, spec).to_pylist() == _python(values, spec)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=50),
       st.sampled_from(SPECS))
def test_fixed_equals_python_on_any_double(values, spec):
    assert fixed(values, spec).to_pylist() == _python(values, spec)


def test_template_rows_equal_str_format_with_unicode_and_escaped_braces():
    rng = np.random.default_rng(1)
    cols = [rng.uniform(0, 1, 5_000), rng.lognormal(3, 3, 5_000), rng.normal(0, 1e6, 5_000)]
    template = "得分（{:.3f}）= {{x}} {:,.2f} ≥ {:,.0f} end"
    expected = [template.format(*row) for row in zip(*(c.tolist() for c in cols), strict=True)]
    assert format_rows(template, cols).to_pylist() == expected
    assert format_rows("no fields", [np.zeros(3)]).to_pylist() == ["no fields"] * 3
    assert format_rows("{:.1f}", [np.zeros(0)]).to_pylist() == []


def test_unsupported_fields_are_refused():
    with pytest.raises(ValueError, match="supports"):
        format_rows("{:d}", [np.zeros(2)])
    with pytest.raises(ValueError, match="supports"):
        format_rows("{0:.2f}", [np.zeros(2)])


def test_a_template_without_fields_gives_its_text_on_every_row():
    assert format_rows("none {{hold}}", [], 3).to_pylist() == ["none {hold}"] * 3
    assert format_rows("{:.1f}", [np.array([1.25, -0.0])]).to_pylist() == ["1.2", "-0.0"]
    assert len(format_rows("x", [])) == 0
