"""Reading, mapping and validating transactions; demo and synthetic datasets."""

from clvtier.data.io import ColumnMap, ReadOptions, write_frame
from clvtier.data.schema import (
    REASONS,
    RETURNS_POLICIES,
    Accounting,
    Transactions,
    load_transactions,
    to_date,
)

__all__ = ["ColumnMap", "ReadOptions", "write_frame", "REASONS", "RETURNS_POLICIES",
           "Accounting", "Transactions", "load_transactions", "to_date"]
