"""``heddle image build FILE ENV_OR_TASK --dockerfile``: render a task environment's image.

Heddle does not run a container builder itself: it prints the Dockerfile (pipe it to
``docker build -f - .``) or the Ray runtime_env that the ray executor uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from heddle._sdk import program
from heddle._sdk.environment import TaskEnvironment
from heddle._sdk.image import Image, image_of
from heddle._sdk.task import Task


@click.group()
def image() -> None:
    """Render the images of task environments (heddle.Image)."""


def _image_in(path: str, name: str) -> Image:
    if not Path(path).is_file():
        raise click.UsageError(f"no such Python file: {path}")
    module = program.load_file(path)
    obj = getattr(module, name, None)
    if obj is None:
        envs = {v.name: v for v in vars(module).values() if isinstance(v, TaskEnvironment)}
        obj = envs.get(name)
    if isinstance(obj, Task):
        obj = obj.env
    if not isinstance(obj, TaskEnvironment):
        found = sorted(k for k, v in vars(module).items() if isinstance(v, TaskEnvironment | Task))
        raise click.UsageError(
            f"{name!r} is not a task environment or task in {path}; "
            f"there: {', '.join(found) or 'none'}"
        )
    img = image_of(obj.image)
    if img is None:
        raise click.UsageError(
            f"task environment {obj.name!r} has no image (image=heddle.Image(...))"
        )
    return img


@image.command()
@click.argument("file", metavar="FILE")
@click.argument("name", metavar="ENV_OR_TASK")
@click.option("--dockerfile", is_flag=True, help="Print the image's Dockerfile")
@click.option("--runtime-env", is_flag=True, help="Print the image's Ray runtime_env as JSON")
def build(file: str, name: str, dockerfile: bool, runtime_env: bool) -> None:
    """Render the image of a task environment (or of a task's environment) in FILE.

    With --dockerfile, print a Dockerfile: `heddle image build flow.py env --dockerfile
    | docker build -t REPO:TAG -f - .`, then set Image(name="REPO:TAG") so Ray workers
    run in it. With --runtime-env, print what the ray executor passes to Ray.
    """
    if dockerfile == runtime_env:
        raise click.UsageError("choose one of --dockerfile or --runtime-env")
    img = _image_in(file, name)
    if dockerfile:
        click.echo(img.dockerfile(), nl=False)
    else:
        click.echo(json.dumps(img.runtime_env(), indent=2, sort_keys=True))
