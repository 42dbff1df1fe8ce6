"""A1111's Clip skip, Variation seed (strength), Seed resize from, Emphasis and Styles keys:
read into the parameters (nothing listed as dropped), written back only when not default."""

from __future__ import annotations

from ldstudio.core.metadata import a1111_parameters
from ldstudio.core.params import GenerationParams
from ldstudio.core.readers import parse_a1111_text, unapplied_values

TEXT = (
    "a (fluffy cat:1.2) BREAK on a [red] sofa\n"
    "Negative prompt: blurry\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 123, Size: 512x512, Model: sd15, "
    "Clip skip: 2, Variation seed: 456, Variation seed strength: 0.3, "
    "Seed resize from: 448x512, Emphasis: No norm"
)


def test_every_prompt_and_seed_key_is_applied() -> None:
    result = parse_a1111_text(TEXT)
    params = result.params
    assert params is not None
    assert params.prompt == "a (fluffy cat:1.2) BREAK on a [red] sofa"  # the syntax as written
    assert (params.clip_skip, params.variation_seed, params.variation_strength) == (2, 456, 0.3)
    assert params.seed_resize_from == (448, 512) and params.emphasis == "no-norm"
    ours = {"Clip skip", "Variation seed", "Variation seed strength", "Seed resize from"}
    assert not [key for key, _value in unapplied_values(result) if key in ours | {"Emphasis"}]
    assert not result.warnings


def test_written_back_as_a1111_writes_them_and_only_when_set() -> None:
    params = parse_a1111_text(TEXT).params
    assert params is not None
    text = a1111_parameters(params.replace(styles=("cinematic",)), "sd15")
    line = text.splitlines()[-1]
    for pair in (
        "Clip skip: 2",
        "Variation seed: 456",
        "Variation seed strength: 0.3",
        "Seed resize from: 448x512",
        "Emphasis: No norm",
        "Styles: cinematic",
    ):
        assert pair in line
    again = parse_a1111_text(text).params
    assert again is not None and again.replace(model="") == params.replace(
        model="", styles=("cinematic",)
    )
    plain = a1111_parameters(GenerationParams(prompt="x", seed=1, width=64, height=64), "m")
    assert "Clip skip" not in plain and "Variation" not in plain and "Emphasis" not in plain


def test_a_bad_value_is_named_and_left_out() -> None:
    result = parse_a1111_text("x\nSteps: 20, Seed: 1, Clip skip: 40, Emphasis: Loud")
    assert result.params is not None and result.params.clip_skip == 1
    assert any("Clip skip: '40' cannot be used" in w for w in result.warnings)
    assert any("Emphasis: 'Loud' cannot be used" in w for w in result.warnings)


def test_the_cli_takes_the_prompt_and_seed_options(tmp_path, capsys, tiny_model) -> None:  # type: ignore[no-untyped-def]
    from ldstudio.cli import main
    from ldstudio.cli.common import EXIT_BAD_INPUT, EXIT_OK
    from ldstudio.core.metadata import read_request

    out = tmp_path / "v.png"
    code = main(
        ["generate", "a (red:1.3) circle BREAK on blue", "--model", str(tiny_model),
         "--steps", "2", "--seed", "3", "--clip-skip", "2", "--emphasis", "no-norm",
         "--variation-seed", "5", "--variation-strength", "0.2", "--seed-resize-from",
         "64x64", "--out", str(out)]
    )  # fmt: skip
    assert code == EXIT_OK, capsys.readouterr().err
    request, _notes = read_request(out)
    assert request is not None
    p = request.params
    assert (p.clip_skip, p.emphasis, p.variation_seed, p.variation_strength) == (
        2, "no-norm", 5, 0.2
    )  # fmt: skip
    assert p.seed_resize_from == (64, 64)
    capsys.readouterr()
    assert main(["generate", "x", "--variation-strength", "0.3"]) == EXIT_BAD_INPUT
    assert "--variation-strength: only with --variation-seed" in capsys.readouterr().err
    assert main(["generate", "x", "--seed-resize-from", "big"]) == EXIT_BAD_INPUT
    assert "--seed-resize-from: 'big' is not WIDTHxHEIGHT" in capsys.readouterr().err
