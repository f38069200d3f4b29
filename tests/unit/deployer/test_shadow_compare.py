"""Shadow comparisons: labels, scores and rankings from OIP v2 and MLflow scoring answers."""

from __future__ import annotations

from typing import Any

import pytest

from atoll.deployer.routing.shadow import compare, outputs_of


def oip(**outputs: tuple[str, list[int], list[Any]]) -> dict[str, Any]:
    return {
        "model_name": "m",
        "outputs": [
            {"name": name, "datatype": datatype, "shape": shape, "data": data}
            for name, (datatype, shape, data) in outputs.items()
        ],
    }


class TestLabels:
    def test_agreement_is_the_share_of_equal_labels_and_scores_differences_come_along(self) -> None:
        primary = oip(label=("INT64", [4], [1, 0, 1, 1]), probabilities=("FP32", [4, 2], [0.1, 0.9] * 4))
        candidate = oip(label=("INT64", [4], [1, 1, 1, 0]), probabilities=("FP32", [4, 2], [0.3, 0.7] * 4))
        found = compare(primary, candidate)
        assert found.kind == "label" and found.agreement == 0.5
        assert found.max_abs_diff == pytest.approx(0.2)
        assert found.rank_overlap is None

    def test_string_labels_from_mlflow_scoring(self) -> None:
        found = compare({"predictions": ["cat", "dog", "cat"]}, {"predictions": ["cat", "cat", "cat"]})
        assert found.kind == "label" and found.agreement == pytest.approx(2 / 3)

    def test_identical_answers_agree_fully(self) -> None:
        answer = oip(label=("INT64", [2], [0, 1]))
        assert compare(answer, answer).agreement == 1.0


class TestScores:
    def test_max_abs_diff_over_every_value(self) -> None:
        found = compare({"predictions": [0.25, 0.5, 1.0]}, {"predictions": [0.25, 0.75, 0.9]})
        assert found.kind == "score" and found.max_abs_diff == pytest.approx(0.25) and found.agreement is None

    def test_a_label_kind_on_scores_only_is_refused(self) -> None:
        with pytest.raises(ValueError, match="no label output"):
            compare({"predictions": [0.1]}, {"predictions": [0.2]}, kind="label")


class TestRankings:
    def test_overlap_at_k_of_scores_per_row(self) -> None:
        # Row 1: top-2 by score {2, 0} vs {2, 1} -> 1/2. Row 2: {0, 1} vs {0, 1} -> 1.
        primary = oip(scores=("FP32", [2, 3], [0.5, 0.1, 0.9, 0.8, 0.7, 0.1]))
        candidate = oip(scores=("FP32", [2, 3], [0.1, 0.5, 0.9, 0.9, 0.6, 0.2]))
        found = compare(primary, candidate, kind="ranking", top_k=2)
        assert found.kind == "ranking" and found.rank_overlap == pytest.approx(0.75)

    def test_overlap_at_k_of_ranked_item_ids(self) -> None:
        primary = {"predictions": [[11, 12, 13, 14], [5, 6, 7, 8]]}
        candidate = {"predictions": [[12, 11, 99, 14], [8, 7, 6, 5]]}
        assert compare(primary, candidate, kind="ranking", top_k=3).rank_overlap == pytest.approx(
            (2 / 3 + 2 / 3) / 2
        )
        assert compare(primary, candidate, kind="ranking", top_k=4).rank_overlap == pytest.approx(
            (3 / 4 + 1) / 2
        )


class TestRefusals:
    def test_answers_that_cannot_be_compared_say_why(self) -> None:
        with pytest.raises(ValueError, match="no output in common"):
            compare(oip(label=("INT64", [1], [1])), oip(other=("INT64", [1], [1])))
        with pytest.raises(ValueError, match="3 values against 2"):
            compare({"predictions": [1, 2, 3]}, {"predictions": [1, 2]})
        with pytest.raises(ValueError, match="not an OIP v2 or MLflow"):
            outputs_of({"error": "boom"})

    def test_mlflow_records_give_one_output_per_column(self) -> None:
        found = outputs_of({"predictions": [{"label": 1, "score": 0.5}, {"label": 0, "score": 0.25}]})
        assert found["label"].data == [1, 0] and found["score"].data == [0.5, 0.25]
