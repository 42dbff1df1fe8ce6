"""`ldstudio styles import|list`: A1111's styles.csv, kept in the data folder.

`ldstudio styles import ~/stable-diffusion-webui/styles.csv` checks the file (a bad row is
named with its line) and copies it to `<data folder>/styles.csv`, replacing the one there
only once the new one reads; `ldstudio generate --style NAME` applies a style (repeatable),
as A1111 does: `{prompt}` in the style's prompt becomes yours, else it is appended.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ldstudio.cli.common import EXIT_OK, BadInput
from ldstudio.core import paths
from ldstudio.core.prompts import Style, read_styles


def styles_path() -> Path:
    return paths.home_dir() / "styles.csv"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    styles = commands.add_parser(
        "styles",
        help="import and list A1111 prompt styles (styles.csv)",
        description="A1111's prompt styles: import a styles.csv, list the styles known.",
    )
    actions = styles.add_subparsers(dest="styles_command", metavar="ACTION", required=True)
    imported = actions.add_parser("import", help="use this styles.csv (checked, then copied)")
    imported.add_argument("file", help="an A1111 styles.csv")
    imported.set_defaults(handler=run_import)
    listed = actions.add_parser("list", help="the styles known, with their prompts")
    listed.set_defaults(handler=run_list)


def known_styles() -> list[Style]:
    """The imported styles; [] before any import. BadInput for a damaged file."""
    path = styles_path()
    if not path.is_file():
        return []
    try:
        return read_styles(path)
    except (OSError, ValueError) as exc:
        raise BadInput(f"{exc}; import a good styles.csv again") from None


def styles_named(names: list[str]) -> list[Style]:
    """The styles `--style` names, in order; BadInput naming one not known and those that are."""
    styles = {style.name: style for style in known_styles()}
    chosen = []
    for name in names:
        match = styles.get(name) or next(
            (s for s in styles.values() if s.name.lower() == name.lower()), None
        )
        if match is None:
            known = ", ".join(sorted(styles)) or "none (import a styles.csv first)"
            raise BadInput(f"--style: {name!r} is not a known style; known: {known}")
        chosen.append(match)
    return chosen


def run_import(args: argparse.Namespace) -> int:
    from ldstudio.core.atomic import atomic_file

    source = Path(args.file).expanduser()
    try:
        styles = read_styles(source)
        data = source.read_bytes()
    except (OSError, ValueError) as exc:
        raise BadInput(str(exc)) from None
    with atomic_file(styles_path()) as handle:
        handle.write(data)
    print(f"{len(styles)} style(s) imported to {styles_path()}")
    return EXIT_OK


def run_list(args: argparse.Namespace) -> int:
    for style in known_styles():
        negative = f"  (negative: {style.negative_prompt})" if style.negative_prompt else ""
        print(f"{style.name}: {style.prompt}{negative}")
    return EXIT_OK
