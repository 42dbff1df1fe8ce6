"""The wheel carries everything the app needs: build it, install it into a fresh venv, run it."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", str(dist), str(REPO)],
        cwd=dist,
    )  # fmt: skip
    (built,) = dist.glob("ldstudio-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv that reuses the test venv's torch & co. but has its own ldstudio (the wheel).

    Not `--system-site-packages`: that reaches the base interpreter's site-packages, which on a
    bare machine hold none of ldstudio's dependencies. A .pth file naming the test venv's
    site-packages instead: a plain directory line only adds the path, without running the .pth
    files inside it, so the checkout's editable install stays out of reach and the wheel's
    ldstudio (in the new venv's own site-packages, earlier on sys.path) is what gets imported.
    """
    root = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", str(root)], cwd=root)
    python = root / "bin" / "python"
    run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall",
         str(wheel)],
        cwd=root,
    )  # fmt: skip
    # Only now: pip must not see (nor try to replace) the test venv's ldstudio.
    inner = run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=root
    ).strip()
    outer = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(inner) / "ldstudio-test-deps.pth").write_text("".join(f"{p}\n" for p in outer))
    return root


def venv_env(home: Path) -> dict[str, str]:
    env = dict(os.environ, LDSTUDIO_HOME=str(home), HF_HUB_OFFLINE="1")
    env.pop("PYTHONPATH", None)  # nothing may point back into the checkout
    return env


def test_wheel_holds_the_package_icons_and_resources(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "ldstudio/qt/main_window.py" in names
    assert "ldstudio/app.py" in names
    assert "ldstudio/resources/icons/ldstudio-256.png" in names
    assert "ldstudio/resources/icons/ldstudio.svg" in names
    model = REPO / "resources" / "models" / "ldstudio-shapes"
    for path in model.rglob("*"):
        if path.is_file():
            assert f"ldstudio/resources/models/ldstudio-shapes/{path.relative_to(model)}" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "ldstudio = ldstudio.__main__:main" in text
    assert "ldstudio-gui = ldstudio.__main__:gui_main" in text


def test_installed_wheel_is_what_gets_imported(venv: Path, tmp_path: Path) -> None:
    code = (
        "import ldstudio, json; from ldstudio.core import paths; "
        "print(json.dumps({'file': ldstudio.__file__, 'resources': str(paths.resource_dir()), "
        "'icon': paths.resource_path('icons', 'ldstudio-64.png').is_file()}))"
    )
    out = json.loads(run([str(venv / "bin" / "python"), "-c", code], tmp_path, venv_env(tmp_path)))
    assert Path(out["file"]).resolve().is_relative_to(venv.resolve()), out
    assert Path(out["resources"]).resolve().is_relative_to(venv.resolve()), out
    assert out["icon"]
    assert (venv / "bin" / "ldstudio-gui").is_file()


def test_installed_wheel_generates_with_the_bundled_model(venv: Path, tmp_path: Path) -> None:
    model = REPO / "resources" / "models" / "ldstudio-shapes"
    if not (model / "model_index.json").is_file():
        pytest.skip(f"the bundled model is not in this checkout yet ({model}/model_index.json)")
    out_dir = tmp_path / "out"
    stdout = run(
        [str(venv / "bin" / "ldstudio"), "generate", "a red circle on a blue background",
         "--steps", "4", "--seed", "1", "--device", "cpu", "--out", str(out_dir), "--json"],
        tmp_path,
        venv_env(tmp_path / "home"),
    )  # fmt: skip
    result = json.loads(stdout)
    images = [Path(r["path"]) for r in result["images"]]
    assert len(images) == 1 and images[0].is_file()
    assert images[0].parent == out_dir
