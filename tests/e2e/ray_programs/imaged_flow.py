"""A program whose environment declares an image, for `heddle image build`."""

from __future__ import annotations

import heddle

train = heddle.TaskEnvironment(
    name="train",
    image=heddle.Image(
        base="python:3.11-slim",
        pip=["pandas==2.2.2", "scikit-learn>=1.4"],
        apt=["git", "libgomp1"],
        env={"MODE": "prod"},
    ),
)


@train.task
def fit(x: int) -> int:
    return x
