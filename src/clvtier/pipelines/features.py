"""``clvtier features``: the per-customer feature table as of a date, with the row accounting,
the diagnosis and the quarantined rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clvtier.data import Accounting, LoadSpec, load_transactions, to_date, write_frame
from clvtier.data.io import check_no_overlap, output_format
from clvtier.features import customer_features, unit_days
from clvtier.segment import Diagnosis, diagnose


@dataclass
class FeaturesResult:
    output: Path
    customers: int
    accounting: Accounting
    #: None from the Spark engine, which never collects the feature table
    diagnosis: Diagnosis | None
    rejects: Path | None = None
    notes: list[str] | None = None

    def format(self) -> str:
        lines = [
            self.accounting.format(),
            *([self.diagnosis.format()] if self.diagnosis is not None else []),
            f"customers           {self.customers:>12,}   -> {self.output}",
        ]
        if self.rejects is not None:
            lines.append(f"rejects             {self.accounting.rows_quarantined:>12,}   -> {self.rejects}")
        lines += [f"WARNING: {note}" for note in self.notes or []]
        return "\n".join(lines)


def build_features(
    source,
    *,
    as_of,
    output,
    time_unit: str = "days",
    spec: LoadSpec | None = None,
    rejects=None,
    escape_formulas: bool = True,
) -> FeaturesResult:
    """Read ``source``, compute the feature table as of ``as_of`` in ``time_unit`` and write it to
    ``output``; quarantined rows go to ``rejects`` (default ``<output>.rejects.csv``), written only
    when there are any. CSV text cells that a spreadsheet would run as formulas get a leading ``'``
    unless ``escape_formulas=False``."""
    output = Path(output)
    output_format(output)
    default_rejects = output.with_name(output.name + ".rejects.csv")
    check_no_overlap({"transactions": source}, {"output": output, "rejects file": rejects or default_rejects})
    unit_days(time_unit)
    day = to_date(as_of, what="as_of")
    tx = load_transactions(source, spec or LoadSpec(), in_place=True)  # a Parquet file: read in place
    table = customer_features(tx, as_of=day, time_unit=time_unit)
    diagnosis = diagnose(table)  # everything that can fail, before anything is written
    accounting = tx.accounting(day)
    target = None
    if accounting.rows_quarantined:
        target = Path(rejects) if rejects is not None else default_rejects
        tx.write_rejects(target, escape_formulas=escape_formulas)
    write_frame(table, output, escape_formulas=escape_formulas)
    notes = [n for n in (tx.stale_as_of(day),) if n]
    return FeaturesResult(output, len(table), accounting, diagnosis, target, notes)


__all__ = ["FeaturesResult", "build_features"]
