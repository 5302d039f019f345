"""Reading, mapping and validating transactions; demo and synthetic datasets."""

from clvtier.data.io import RETURNS_POLICIES, ColumnMap, LoadSpec, write_frame
from clvtier.data.schema import (
    REASONS,
    Accounting,
    Transactions,
    load_transactions,
    to_date,
)

__all__ = ["ColumnMap", "LoadSpec", "write_frame", "REASONS", "RETURNS_POLICIES",
           "Accounting", "Transactions", "load_transactions", "to_date"]
