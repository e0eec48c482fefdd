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


def _tables(markdown: str) -> list[list[str]]:
    """The Markdown tables of a text, each as its lines (header, separator, rows)."""
    tables, current = [], []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line.strip())
        elif current:
            tables.append(current)
            current = []
    return tables


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.name)
def test_readme_results_are_copies_of_results_md(project: Path):
    """A README table with the header of a RESULTS.md table quotes it: every row as `make bench` wrote it."""
    results = (project / "RESULTS.md").read_text()
    result_lines = {line.strip() for line in results.splitlines()}
    for table in _tables((project / "README.md").read_text()):
        if table[0] in result_lines:
            stale = [row for row in table[2:] if row not in result_lines]
            assert not stale, f"{project.name}/README.md quotes RESULTS.md rows that are not there: {stale}"
