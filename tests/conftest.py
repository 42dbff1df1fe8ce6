"""Hermetic test setup: offline hubs, a fresh ldstudio home per test, a tiny model per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Before anything imports huggingface_hub: no test may reach a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
sys.path.insert(0, str(TESTS_DIR))


@pytest.fixture(autouse=True)
def ldstudio_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "ldstudio-home"
    monkeypatch.setenv("LDSTUDIO_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SD-shaped diffusers folder with random weights (see tests/tiny_model.py)."""
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def backend():
    """One CPU backend for the session: the pipeline cache is part of what is tested."""
    from ldstudio.engine.backend import DiffusersBackend

    engine = DiffusersBackend(device="cpu")
    yield engine
    engine.close()
