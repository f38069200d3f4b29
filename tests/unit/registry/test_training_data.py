"""Where a version's training data is fetched from: lineage values and dataset sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atoll.errors import InvalidInput
from atoll.registry.mlflow.adapter import LoggedDataset
from atoll.registry.training_data import pick_dataset, resolve

RUN = "0123456789abcdef0123456789abcdef"


def lineage(value: str, roots: tuple[Path, ...] = (), run_id: str | None = RUN) -> str:
    return resolve(value, run_id=run_id, local_roots=roots, relative_to_run=True).uri


class TestLineageValue:
    @pytest.mark.parametrize(
        "value",
        [
            f"runs:/{RUN}/data/train.parquet",
            "models:/fraud/3/train.parquet",
            f"mlflow-artifacts:/1/{RUN}/artifacts/data/train.parquet",
            "s3://datasets/fraud/2026-11/train.parquet",
            "gs://datasets/train.csv",
        ],
    )
    def test_mlflow_and_object_store_uris_are_kept(self, value: str) -> None:
        assert lineage(value) == value

    def test_a_relative_path_is_a_path_in_the_versions_run(self) -> None:
        assert lineage("data/train.parquet") == f"runs:/{RUN}/data/train.parquet"
        assert lineage("./data/./train.parquet") == f"runs:/{RUN}/data/train.parquet"

    def test_a_relative_path_without_a_run_or_climbing_out_is_refused(self) -> None:
        with pytest.raises(InvalidInput, match="the version has no run"):
            lineage("data/train.parquet", run_id=None)
        with pytest.raises(InvalidInput, match=r"no '\.\.'"):
            lineage("../other-run/train.parquet")

    @pytest.mark.parametrize("value", ["https://intranet/train.csv", "http://10.0.0.1/x", "ftp://h/x"])
    def test_web_and_other_schemes_are_refused_naming_the_scheme(self, value: str) -> None:
        scheme = value.split(":", 1)[0]
        with pytest.raises(InvalidInput, match=f"{scheme}:// is not fetched"):
            lineage(value)

    def test_local_paths_only_under_an_allowed_root(self, tmp_path: Path) -> None:
        root = tmp_path / "datasets"
        root.mkdir()
        (root / "train.csv").write_text("x\n1\n")
        (tmp_path / "secret.csv").write_text("x\n1\n")
        inside = resolve(str(root / "train.csv"), run_id=RUN, local_roots=(root,), relative_to_run=True)
        assert inside.local_path == (root / "train.csv").resolve()
        assert lineage(f"file://{root}/train.csv", (root,)) == str((root / "train.csv").resolve())
        with pytest.raises(InvalidInput, match="outside the folders"):
            lineage(str(tmp_path / "secret.csv"), (root,))
        with pytest.raises(InvalidInput, match="none are set"):
            lineage(str(root / "train.csv"))

    def test_a_symlink_inside_a_root_cannot_lead_out_of_it(self, tmp_path: Path) -> None:
        root = tmp_path / "datasets"
        root.mkdir()
        (tmp_path / "secret.csv").write_text("x\n1\n")
        (root / "link.csv").symlink_to(tmp_path / "secret.csv")
        with pytest.raises(InvalidInput, match="outside the folders"):
            lineage(str(root / "link.csv"), (root,))
        with pytest.raises(InvalidInput, match="outside the folders"):
            lineage(str(root / ".." / "secret.csv"), (root,))


def dataset(
    name: str, source_type: str, source: dict[str, object], context: str | None = "training"
) -> LoggedDataset:
    return LoggedDataset(name=name, context=context, source_type=source_type, source=json.dumps(source))


class TestDatasetInputs:
    def test_the_one_fetchable_training_input_is_picked_and_the_others_explained(
        self, tmp_path: Path
    ) -> None:
        picked, skipped = pick_dataset(
            [
                dataset("eval", "s3", {"uri": "s3://b/eval.parquet"}, context="eval"),
                dataset("raw", "code", {"tags": {"mlflow.source.name": "train.py"}}),
                dataset("train", "s3", {"uri": "s3://b/train.parquet"}),
                dataset("again", "s3", {"uri": "s3://b/train.parquet"}),  # the same file twice
                dataset("web", "http", {"url": "https://example.com/t.csv"}),
                dataset("laptop", "local", {"uri": "data/train.csv"}),
            ],
            local_roots=(),
        )
        assert picked is not None and picked.uri == "s3://b/train.parquet"
        assert skipped[0] == "'raw' (code source: no file)"
        assert "https:// is not fetched" in skipped[1] and "'laptop'" in skipped[2]
        assert "relative path on the training machine" in skipped[2]

    def test_several_different_training_files_are_ambiguous(self) -> None:
        with pytest.raises(InvalidInput, match=r"several training datasets .*lineage `training_data`"):
            pick_dataset(
                [
                    dataset("a", "s3", {"uri": "s3://b/a.parquet"}),
                    dataset("b", "gs", {"uri": "gs://b/b.csv"}),
                ],
                local_roots=(),
            )

    def test_nothing_fetchable_gives_no_location(self) -> None:
        picked, skipped = pick_dataset(
            [dataset("broken", "local", {}), LoggedDataset("bad", "training", "local", "not json")],
            local_roots=(),
        )
        assert picked is None and len(skipped) == 2
