"""The few SQL spellings that differ between DuckDB (the local engine) and Spark SQL.

Validation, the customer-day table and the features are written once, as SQL text built by
functions that take a :class:`Dialect`; everything else (``TRY_CAST``, ``FILTER (WHERE ...)``,
``min_by``, decimals, window functions, ``"quoted"`` identifiers, raw string literals) is spelled
the same in both, given the Spark session settings of :mod:`clvtier.spark.session`
(``spark.sql.ansi.doubleQuotedIdentifiers`` and ``spark.sql.parser.escapedStringLiterals``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    name: str

    @property
    def text(self) -> str:
        """The type of unbounded text."""
        return "VARCHAR" if self.name == "duckdb" else "STRING"

    def days(self, end: str, start: str) -> str:
        """Whole days from the DATE ``start`` to the DATE ``end``, as BIGINT."""
        if self.name == "duckdb":
            return f"({end} - {start})"
        return f"CAST(datediff({end}, {start}) AS BIGINT)"

    def full_match(self, text: str, pattern: str) -> str:
        """``text`` matches the regular expression ``pattern`` as a whole."""
        if self.name == "duckdb":
            return f"regexp_full_match({text}, '{pattern}')"
        return f"({text} RLIKE '^(?:{pattern})$')"

    def remove(self, text: str, pattern: str) -> str:
        """``text`` with every match of ``pattern`` removed."""
        if self.name == "duckdb":
            return f"regexp_replace({text}, '{pattern}', '', 'g')"
        return f"regexp_replace({text}, '{pattern}', '')"

    def isfinite(self, number: str) -> str:
        if self.name == "duckdb":
            return f"isfinite({number})"
        return f"(NOT isnan({number}) AND abs({number}) < CAST('Infinity' AS DOUBLE))"

    def starts_with(self, text: str, prefix: str) -> str:
        if self.name == "duckdb":
            return f"starts_with({text}, {prefix})"
        return f"startswith({text}, {prefix})"


DUCKDB = Dialect("duckdb")
SPARK = Dialect("spark")

__all__ = ["DUCKDB", "SPARK", "Dialect"]
