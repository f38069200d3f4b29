"""The backend catalog: shipped defaults, an extension file, and errors that name the culprit."""

from __future__ import annotations

from pathlib import Path

import pytest

from atoll.backends import DEFAULTS_FILE, Catalog, CatalogError, load_catalog
from atoll.errors import NotFound

VALID_ENTRY = """
[backends.{name}]
accelerator = "tpu"
resource = "google.com/tpu"
precisions = ["bf16", "fp32"]
default_precision = "bf16"
runtime_provider = "TpuExecutionProvider"
local_executor = "onnxruntime-cpu"
parity = {{ max_abs_diff = 1e-2, min_label_agreement = 0.99 }}
"""


def _extra(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "backends.toml"
    path.write_text(text)
    return path


def _entry(name: str = "tpu", **replace: str) -> str:
    """A valid entry, with some `key = value` lines replaced (value "" drops the line)."""
    lines = []
    for line in VALID_ENTRY.format(name=name).strip().splitlines():
        key = line.split("=")[0].strip()
        if key in replace:
            if replace[key]:
                lines.append(f"{key} = {replace[key]}")
            continue
        lines.append(line)
    added = [
        f"{k} = {v}" for k, v in replace.items() if v and not any(ln.startswith(f"{k} =") for ln in lines)
    ]
    return "\n".join(lines + added) + "\n"


def _catalog_error(tmp_path: Path, text: str) -> str:
    path = _extra(tmp_path, text)
    with pytest.raises(CatalogError) as raised:
        load_catalog(path)
    message = str(raised.value)
    assert str(path) in message, "the message must name the file"
    return message


class TestDefaults:
    @pytest.fixture
    def catalog(self) -> Catalog:
        return load_catalog()

    def test_names(self, catalog: Catalog) -> None:
        assert catalog.names() == ["gpu", "asic", "cpu"]

    def test_gpu(self, catalog: Catalog) -> None:
        gpu = catalog.get("gpu")
        assert gpu.resource == "nvidia.com/gpu"
        assert gpu.node_selector == {"atoll.dev/accelerator": "nvidia-gpu"}
        assert [(t.key, t.operator, t.effect) for t in gpu.tolerations] == [
            ("nvidia.com/gpu", "Exists", "NoSchedule")
        ]
        assert gpu.default_precision == "fp16"
        assert set(gpu.precisions) == {"fp32", "fp16"}
        assert gpu.runtime_provider == "CUDAExecutionProvider"
        assert gpu.local_fallback == "onnxruntime-cpu"

    def test_asic_is_int8(self, catalog: Catalog) -> None:
        asic = catalog.get("asic")
        assert asic.precisions == ["int8"]
        assert asic.default_precision == "int8"
        assert asic.resource == "atoll.dev/asic"
        assert asic.node_selector == {"atoll.dev/accelerator": "inference-asic"}
        assert [t.key for t in asic.tolerations] == ["atoll.dev/asic"]

    def test_cpu_needs_no_extended_resource(self, catalog: Catalog) -> None:
        cpu = catalog.get("cpu")
        assert cpu.resource is None
        assert cpu.node_selector == {}
        assert cpu.tolerations == []
        assert cpu.precisions == ["fp32"]
        assert cpu.parity.max_abs_diff < catalog.get("gpu").parity.max_abs_diff

    def test_every_default_is_consistent(self, catalog: Catalog) -> None:
        for backend in catalog.backends.values():
            assert backend.default_precision in backend.precisions
            assert backend.parity.max_abs_diff > 0
            assert 0 <= backend.parity.min_label_agreement <= 1
            assert backend.max_batch >= 1

    def test_defaults_file_ships_beside_the_module(self) -> None:
        assert DEFAULTS_FILE.name == "backends.toml" and DEFAULTS_FILE.is_file()

    def test_unknown_name_lists_the_known_ones(self, catalog: Catalog) -> None:
        with pytest.raises(NotFound) as raised:
            catalog.get("tpu")
        assert "'tpu'" in raised.value.detail
        for name in ("gpu", "asic", "cpu"):
            assert name in raised.value.detail


class TestExtensionFile:
    def test_adds_a_backend(self, tmp_path: Path) -> None:
        catalog = load_catalog(_extra(tmp_path, _entry("tpu")))
        assert catalog.names() == ["gpu", "asic", "cpu", "tpu"]
        tpu = catalog.get("tpu")
        assert tpu.resource == "google.com/tpu"
        assert tpu.default_precision == "bf16"
        assert tpu.max_batch == 32  # the default

    def test_replaces_a_backend_by_name(self, tmp_path: Path) -> None:
        catalog = load_catalog(_extra(tmp_path, _entry("gpu")))
        gpu = catalog.get("gpu")
        assert gpu.accelerator == "tpu"
        assert gpu.resource == "google.com/tpu"
        assert gpu.node_selector == {}  # replaced whole, not merged
        assert catalog.get("cpu").accelerator == "cpu"
        assert sorted(catalog.names()) == ["asic", "cpu", "gpu"]

    def test_empty_file_changes_nothing(self, tmp_path: Path) -> None:
        assert load_catalog(_extra(tmp_path, "")).names() == load_catalog().names()


class TestInvalidEntries:
    def test_unknown_field(self, tmp_path: Path) -> None:
        message = _catalog_error(tmp_path, _entry(gpus="2"))
        assert "'tpu'" in message and "gpus" in message

    def test_bad_precision(self, tmp_path: Path) -> None:
        message = _catalog_error(tmp_path, _entry(precisions='["fp8"]', default_precision='"fp8"'))
        assert "'tpu'" in message and "precisions" in message

    def test_default_precision_not_offered(self, tmp_path: Path) -> None:
        message = _catalog_error(tmp_path, _entry(default_precision='"int8"'))
        assert "'tpu'" in message and "default_precision" in message and "int8" in message

    @pytest.mark.parametrize("name", ["TPU", "1tpu", "tpu_v5", "t" * 33])
    def test_bad_name(self, tmp_path: Path, name: str) -> None:
        message = _catalog_error(tmp_path, _entry(f'"{name}"'))
        assert name in message and "name" in message

    @pytest.mark.parametrize("resource", ['"google.com/ tpu"', '"a/b/c"', '"/tpu"'])
    def test_bad_resource_name(self, tmp_path: Path, resource: str) -> None:
        message = _catalog_error(tmp_path, _entry(resource=resource))
        assert "'tpu'" in message and "resource" in message

    @pytest.mark.parametrize(
        ("parity", "field"),
        [
            ("{ max_abs_diff = 0, min_label_agreement = 0.9 }", "max_abs_diff"),
            ("{ max_abs_diff = 1e-3, min_label_agreement = 1.5 }", "min_label_agreement"),
            ("{ max_abs_diff = 1e-3, min_label_agreement = -0.1 }", "min_label_agreement"),
        ],
    )
    def test_parity_out_of_range(self, tmp_path: Path, parity: str, field: str) -> None:
        message = _catalog_error(tmp_path, _entry(parity=parity))
        assert "'tpu'" in message and f"parity.{field}" in message

    @pytest.mark.parametrize("field", ["accelerator", "runtime_provider", "parity", "default_precision"])
    def test_missing_required_field(self, tmp_path: Path, field: str) -> None:
        message = _catalog_error(tmp_path, _entry(**{field: ""}))
        assert "'tpu'" in message and field in message

    def test_max_batch_out_of_range(self, tmp_path: Path) -> None:
        message = _catalog_error(tmp_path, _entry(max_batch="0"))
        assert "max_batch" in message

    def test_backends_not_a_table(self, tmp_path: Path) -> None:
        message = _catalog_error(tmp_path, 'backends = ["gpu"]\n')
        assert "[backends]" in message

    def test_unknown_top_level_key(self, tmp_path: Path) -> None:
        message = _catalog_error(tmp_path, "[runtimes.gpu]\nx = 1\n")
        assert "runtimes" in message

    def test_invalid_toml(self, tmp_path: Path) -> None:
        message = _catalog_error(tmp_path, "[backends.tpu\naccelerator = 1\n")
        assert "TOML" in message

    def test_missing_file(self, tmp_path: Path) -> None:
        missing = tmp_path / "nope.toml"
        with pytest.raises(CatalogError) as raised:
            load_catalog(missing)
        assert str(missing) in str(raised.value)
        assert "not found" in str(raised.value)

    def test_error_in_replacement_names_the_extension_file(self, tmp_path: Path) -> None:
        message = _catalog_error(tmp_path, _entry("gpu", max_wait_ms="-1"))
        assert "'gpu'" in message and "max_wait_ms" in message
        assert str(DEFAULTS_FILE) not in message


class TestMessageFormat:
    def test_field_error_reads_entry_then_field(self, tmp_path: Path) -> None:
        message = _catalog_error(tmp_path, _entry(accelerator=""))
        assert message.endswith("entry 'tpu', field accelerator: Field required")

    @pytest.mark.parametrize(
        ("text", "field"),
        [
            (_entry("TPU"), "name"),
            (_entry(default_precision='"int8"'), "default_precision"),
            (_entry(resource='"a/b/c"'), "resource"),
        ],
        ids=["name", "default_precision", "resource"],
    )
    def test_model_level_error_names_the_field(self, tmp_path: Path, text: str, field: str) -> None:
        message = _catalog_error(tmp_path, text)
        assert f", field {field}: " in message
        assert "Value error" not in message


CATALOG = load_catalog()


class TestProviders:
    def test_cpu_backend_runs_on_its_own_provider(self) -> None:
        choice = CATALOG.get("cpu").providers(["CPUExecutionProvider"])
        assert choice.providers == ["CPUExecutionProvider"] and not choice.emulated and choice.note == ""

    def test_gpu_uses_cuda_where_present(self) -> None:
        choice = CATALOG.get("gpu").providers(["CUDAExecutionProvider", "CPUExecutionProvider"])
        assert choice.providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
        assert not choice.emulated

    def test_gpu_falls_back_to_the_cpu_and_says_so(self) -> None:
        choice = CATALOG.get("gpu").providers(["CPUExecutionProvider"])
        assert choice.providers == ["CPUExecutionProvider"]
        assert not choice.emulated, "a fallback runs the real fp16 graph; the device is not emulated"
        assert "CUDAExecutionProvider is not available" in choice.note
        assert "local_fallback 'onnxruntime-cpu'" in choice.note

    def test_asic_is_emulated_on_the_cpu(self) -> None:
        choice = CATALOG.get("asic").providers(["CPUExecutionProvider"])
        assert choice.providers == ["CPUExecutionProvider"] and choice.emulated
        assert "emulated on the CPU" in choice.note
        assert "'AsicExecutionProvider' is the plug-in point" in choice.note

    def test_a_real_asic_provider_is_used_when_plugged_in(self) -> None:
        choice = CATALOG.get("asic").providers(["AsicExecutionProvider", "CPUExecutionProvider"])
        assert choice.providers[0] == "AsicExecutionProvider" and not choice.emulated
