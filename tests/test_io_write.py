import pandas as pd
import pytest

from clvtier.data import write_frame
from clvtier.data.io import atomic_output
from clvtier.errors import InputError


@pytest.mark.parametrize("name", ["out.csv", "out.parquet"])
def test_write_frame_round_trips(tmp_path, name):
    frame = pd.DataFrame({"customer_id": ["a", "b"], "x": [1.5, 2.0]})
    write_frame(frame, tmp_path / "sub" / name)
    back = (pd.read_csv if name.endswith("csv") else pd.read_parquet)(tmp_path / "sub" / name)
    pd.testing.assert_frame_equal(back, frame)


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.parquet"
    target.write_bytes(b"previous run")
    with pytest.raises(RuntimeError, match="killed"), atomic_output(target) as tmp:
        tmp.write_bytes(b"half a fi")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"previous run"
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def test_unserialisable_frame_leaves_nothing(tmp_path):
    bad = pd.DataFrame({"x": [object(), object()]})
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's error type is its own business
        write_frame(bad, tmp_path / "out.parquet")
    assert list(tmp_path.iterdir()) == []


def test_output_extension_is_checked():
    with pytest.raises(InputError, match=r"output must end in \.csv or \.parquet, got \.json"):
        write_frame(pd.DataFrame({"x": [1]}), "f.json")
