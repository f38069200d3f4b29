"""Guard tests for the one-namespace layout (see docs/architecture.md).

Folders are mapped into `atoll` by setuptools' `package-dir`; a folder missing from
`packages` silently drops out of a wheel, and a `platform/__init__.py` shadows the stdlib.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CODE_FOLDERS = ("platform", "registry", "deployer", "abtest", "monitoring", "web", "migrations")


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _folder_to_package() -> dict[Path, str]:
    """Every folder holding .py files under the code folders, as its `atoll.*` name."""
    package_dir: dict[str, str] = _pyproject()["tool"]["setuptools"]["package-dir"]
    roots = {ROOT / folder: package for package, folder in package_dir.items()}
    mapping: dict[Path, str] = {}
    for folder in CODE_FOLDERS:
        for source in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in source.parts:
                continue
            directory = source.parent
            root = next(
                r
                for r in sorted(roots, key=lambda p: len(p.parts), reverse=True)
                if directory == r or r in directory.parents
            )
            relative = directory.relative_to(root).parts
            mapping[directory] = ".".join((roots[root], *relative))
    return mapping


class TestPyproject:
    def test_every_code_folder_is_mapped_to_a_package_root(self) -> None:
        package_dir: dict[str, str] = _pyproject()["tool"]["setuptools"]["package-dir"]
        assert set(package_dir.values()) == set(CODE_FOLDERS)
        assert package_dir["atoll"] == "platform"
        assert all(name == "atoll" or name.startswith("atoll.") for name in package_dir)

    def test_every_folder_with_python_code_is_listed(self) -> None:
        listed = set(_pyproject()["tool"]["setuptools"]["packages"])
        mapping = _folder_to_package()
        # The walk must find the nested packages, or this guard checks nothing.
        assert {"atoll", "atoll.auth", "atoll.cli", "atoll.migrations.versions"} <= set(mapping.values())
        missing = {
            str(folder.relative_to(ROOT)): package
            for folder, package in mapping.items()
            if package not in listed
        }
        assert not missing, f"add to [tool.setuptools] packages: {missing}"

    def test_listed_packages_exist(self) -> None:
        listed = set(_pyproject()["tool"]["setuptools"]["packages"])
        stale = listed - set(_folder_to_package().values())
        assert not stale, f"listed but no folder with .py files: {sorted(stale)}"


class TestStdlibPlatformIsNotShadowed:
    def test_platform_has_no_init(self) -> None:
        assert (ROOT / "platform").is_dir()
        assert not (ROOT / "platform" / "__init__.py").exists()

    def test_in_process_platform_is_the_stdlib(self) -> None:
        import platform

        assert callable(getattr(platform, "python_implementation", None))
        assert platform.python_implementation()

    def test_import_platform_from_repo_root(self) -> None:
        result = subprocess.run(
            [sys.executable, "-c", "import platform; print(platform.system())"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip()

    def test_import_app_from_another_directory(self, tmp_path: Path) -> None:
        result = subprocess.run(
            [sys.executable, "-c", "import atoll.web.app, platform; platform.system()"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
