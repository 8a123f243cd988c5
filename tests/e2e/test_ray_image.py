"""heddle.Image: what it renders to (a Ray runtime_env, a Dockerfile) and the
`heddle image build` command. Nothing is installed or built here."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import heddle
from heddle._sdk.image import runtime_env_for
from heddle.cli import cli

FLOW = str(Path(__file__).parent / "ray_programs" / "imaged_flow.py")


def test_the_dockerfile_installs_apt_then_pip_packages_and_sets_env() -> None:
    image = heddle.Image(
        base="python:3.11-slim",
        pip=["pandas==2.2.2", "scikit-learn>=1.4"],
        apt=["git", "libgomp1"],
        env={"MODE": "prod", "QUOTE": 'say "hi"'},
    )
    assert image.dockerfile() == (
        "FROM python:3.11-slim\n"
        "RUN apt-get update \\\n"
        " && apt-get install -y --no-install-recommends git libgomp1 \\\n"
        " && rm -rf /var/lib/apt/lists/*\n"
        "RUN pip install --no-cache-dir pandas==2.2.2 'scikit-learn>=1.4'\n"
        'ENV MODE="prod"\n'
        'ENV QUOTE="say \\"hi\\""\n'
    )


def test_the_runtime_env_carries_pip_packages_and_env_vars_with_the_tasks_on_top() -> None:
    image = heddle.Image(pip=["httpx"], env={"A": "image", "B": "image"})
    assert image.runtime_env({"B": "task"}) == {
        "pip": ["httpx"],
        "env_vars": {"A": "image", "B": "task"},
    }


def test_a_named_image_runs_ray_workers_in_that_container() -> None:
    image = heddle.Image(apt=["git"], name="registry.example/train:1", env={"A": "1"})
    assert image.runtime_env() == {"image_uri": "registry.example/train:1", "env_vars": {"A": "1"}}


def test_apt_packages_without_a_built_image_are_refused_for_ray() -> None:
    with pytest.raises(heddle.ConfigError, match=r"Image\(name=\.\.\.\)"):
        heddle.Image(apt=["git"]).runtime_env()


def test_package_names_that_could_inject_shell_are_refused() -> None:
    with pytest.raises(heddle.ConfigError, match="apt"):
        heddle.Image(apt=["git; rm -rf /"])
    with pytest.raises(heddle.ConfigError, match="pip"):
        heddle.Image(pip="pandas")  # a string, not a list


def test_a_tasks_runtime_env_comes_from_its_environments_image_and_env_vars() -> None:
    env = heddle.TaskEnvironment(
        name="img", image=heddle.Image(env={"GREETING": "hi"}), env_vars={"LEVEL": "1"}
    )

    @env.task
    def hello() -> str:
        return "hello"

    assert runtime_env_for(hello.spec) == {"env_vars": {"GREETING": "hi", "LEVEL": "1"}}
    other = heddle.TaskEnvironment(name="img", image=heddle.Image(env={"GREETING": "yo"}))
    assert other.task(hello.fn).version != hello.version, "the image is part of the version"


def test_image_build_prints_the_dockerfile_of_an_environment_or_a_task() -> None:
    by_env = CliRunner().invoke(cli, ["image", "build", FLOW, "train", "--dockerfile"])
    assert by_env.exit_code == 0, by_env.output
    assert by_env.output.startswith("FROM python:3.11-slim\n")
    assert "apt-get install -y --no-install-recommends git libgomp1" in by_env.output
    by_task = CliRunner().invoke(cli, ["image", "build", FLOW, "fit", "--dockerfile"])
    assert by_task.output == by_env.output


def test_image_build_names_what_the_file_has_when_the_name_is_wrong() -> None:
    result = CliRunner().invoke(cli, ["image", "build", FLOW, "nope", "--dockerfile"])
    assert result.exit_code == 2
    assert "fit" in result.output and "train" in result.output
