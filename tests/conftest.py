import pandas as pd
import pytest

from clvtier.data.datasets import load_cdnow


@pytest.fixture(scope="session")
def cdnow() -> pd.DataFrame:
    return load_cdnow()

