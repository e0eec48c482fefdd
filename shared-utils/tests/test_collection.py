"""The collection's own contract, checked over every project of the checkout: one config shape, and a
``default.yaml`` that cannot drift from the method config it stands for."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROJECTS = sorted(p.parent for p in ROOT.glob("*/pyproject.toml") if p.parent.name != "shared-utils")


def test_the_collection_has_its_projects():
    assert (ROOT / "Makefile").is_file() and len(PROJECTS) >= 4, PROJECTS


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.name)
def test_default_config_is_a_link_to_a_method_config(project: Path):
    default = project / "configs" / "default.yaml"
    assert default.is_symlink(), f"{default} must be a symlink to the method config it stands for"
    target = default.resolve()
    assert target.parent == default.parent and target.name != "default.yaml", target
    assert "model" in yaml.safe_load(target.read_text()), f"{target} is not a method config"


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.name)
def test_method_configs_name_their_model_by_class_path(project: Path):
    methods = 0
    for config in sorted((project / "configs").glob("*.yaml")):
        model = (yaml.safe_load(config.read_text()) or {}).get("model")
        if model is None or set(model) == {"init_args"}:
            continue  # a dataset config, composed after a method config (it may adjust the model's arguments)
        methods += 1
        assert isinstance(model, dict) and set(model) <= {"class_path", "init_args"} and "class_path" in model, (
            f"{config}: model must be {{class_path: ..., init_args: {{...}}}}, got {model!r}")
        for name, value in (model.get("init_args") or {}).items():
            if isinstance(value, dict) and value.keys() & {"class_path", "init_args"}:
                assert "class_path" in value, f"{config}: model.init_args.{name} has init_args without class_path"
    assert methods >= 2, f"{project}/configs holds fewer than two method configs"
