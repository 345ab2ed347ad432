"""The allowlist's directory confinement (--allowed_root), without a server."""

import os

import pytest

from expansion_service import registry

ANALYZE = registry.by_identifier("beam:schematransform:org.featurebridge:analyze_and_transform:v1")


def test_paths_inside_the_roots_pass_and_others_name_the_field(tmp_path):
    root = tmp_path / "allowed"
    (root / "data").mkdir(parents=True)
    registry.check_directories(ANALYZE.identifier, {"spec": "x", "output_dir": str(root / "data" / "out")}, [str(root)])
    registry.check_directories(ANALYZE.identifier, {"output_dir": str(root)}, [str(root)])
    for outside in [str(tmp_path / "allowedx"), str(root / ".." / "elsewhere"), "/etc"]:
        with pytest.raises(registry.RegistryError, match=r"field 'output_dir' is outside the directories this service allows"):
            registry.check_directories(ANALYZE.identifier, {"output_dir": outside}, [str(root)])


def test_symlinks_cannot_escape_the_roots(tmp_path):
    root = tmp_path / "allowed"
    root.mkdir()
    os.symlink("/etc", root / "link")
    with pytest.raises(registry.RegistryError, match=r"'analyzed_dir' is outside"):
        registry.check_directories("id", {"analyzed_dir": str(root / "link")}, [str(root)])


def test_build_checks_roots_before_constructing_the_stage(tmp_path):
    with pytest.raises(registry.RegistryError, match=r"'output_dir' is outside"):
        ANALYZE.build({"spec": "not even parsed", "output_dir": "/etc/out"}, allowed_roots=[str(tmp_path)])
