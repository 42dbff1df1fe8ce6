"""`ldstudio grid` and `ldstudio batch` take every option `ldstudio generate` has, from
generate's own definitions (`add_generation_arguments`), less PROMPT and the preview files."""

from __future__ import annotations

import argparse

import pytest

from ldstudio.cli import build_parser

LEFT_OUT = {"--preview", "--preview-every", "--preview-dir", "--overwrite"}


def options(command: str) -> set[str]:
    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    sub = commands.choices[command]
    return {opt for action in sub._actions for opt in action.option_strings}


@pytest.mark.parametrize("command", ["grid", "batch"])
def test_grid_and_batch_take_every_generate_option(command: str) -> None:
    generate = options("generate")
    theirs = options(command)
    assert generate - LEFT_OUT <= theirs
    assert not theirs & LEFT_OUT
    assert {"--server", "--lora", "--hires-scale", "--clip-skip", "--init-image"} <= theirs


def test_a_generate_option_grid_cannot_honour_is_refused_by_name(capsys) -> None:
    from ldstudio.cli import main

    code = main(["grid", "--x", "cfg=3,5", "a cat", "--server", "http://127.0.0.1:9"])
    assert code == 2
    assert "--server: not supported by `ldstudio grid`" in capsys.readouterr().err
