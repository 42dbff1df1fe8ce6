"""`ldstudio styles import|list` and `generate --style NAME`: A1111's styles.csv, checked on
import, applied as A1111 applies it ({prompt} placeholder), recorded as `Styles`."""

from __future__ import annotations

from pathlib import Path

import pytest

from ldstudio.cli import main
from ldstudio.cli.common import EXIT_BAD_INPUT, EXIT_OK

CSV = (
    "name,prompt,negative_prompt\n"
    'cinematic,"cinematic still of {prompt}, film grain",blurry\n'
    'vivid,"vivid colours",\n'
)


def test_import_list_and_generate_with_styles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_model: Path
) -> None:
    source = tmp_path / "styles.csv"
    source.write_text(CSV, encoding="utf-8")
    assert main(["styles", "import", str(source)]) == EXIT_OK
    assert "2 style(s) imported" in capsys.readouterr().out
    assert main(["styles", "list"]) == EXIT_OK
    assert "cinematic: cinematic still of {prompt}, film grain  (negative: blurry)" in (
        capsys.readouterr().out
    )
    out = tmp_path / "styled.png"
    code = main(
        ["generate", "a red circle", "--style", "cinematic", "--style", "vivid", "--model",
         str(tiny_model), "--steps", "1", "--out", str(out)]
    )  # fmt: skip
    assert code == EXIT_OK, capsys.readouterr().err
    from ldstudio.core.metadata import read_request

    request, _notes = read_request(out)
    assert request is not None
    params = request.params
    assert params.prompt == "cinematic still of a red circle, film grain, vivid colours"
    assert params.negative_prompt == "blurry" and params.styles == ("cinematic", "vivid")
    from PIL import Image

    assert 'Styles: "cinematic, vivid"' in Image.open(out).text["parameters"]  # type: ignore[attr-defined]


def test_bad_files_and_unknown_styles_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("name,prompt\nfine,one\nworse,two,three\n", encoding="utf-8")
    assert main(["styles", "import", str(bad)]) == EXIT_BAD_INPUT
    assert str(bad) in capsys.readouterr().err
    assert main(["generate", "x", "--style", "nope"]) == EXIT_BAD_INPUT
    assert "--style: 'nope' is not a known style; known: none (import a styles.csv first)" in (
        capsys.readouterr().err
    )
