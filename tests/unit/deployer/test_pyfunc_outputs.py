"""What a pyfunc model's `predict` may return, as the server's `predictions` output."""

from __future__ import annotations

import numpy as np
import pandas as pd

from atoll.deployer.serving.pyfunc_runtime import _as_array


def test_a_series_a_list_and_a_one_column_frame_become_one_value_per_row() -> None:
    for result in (
        pd.Series([1.5, 2.5]),
        [1.5, 2.5],
        pd.DataFrame({"y": [1.5, 2.5]}),
        np.array([[1.5], [2.5]]),
    ):
        array = _as_array(result)
        assert array.shape == (2,) and array.tolist() == [1.5, 2.5]


def test_a_wide_frame_keeps_its_columns_and_text_stays_text() -> None:
    wide = _as_array(pd.DataFrame({"a": [1, 2], "b": [3, 4]}))
    assert wide.shape == (2, 2) and wide.tolist() == [[1, 3], [2, 4]]
    text = _as_array(pd.Series(["OSLO", "LIMA"]))
    assert text.dtype.kind == "O" and text.tolist() == ["OSLO", "LIMA"]
