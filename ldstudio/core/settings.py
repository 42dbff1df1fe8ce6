"""Persistent user settings as one JSON file in the ldstudio home folder; any thread.

Writes are atomic (temp file + rename), so a crash mid-save leaves the previous settings. A file
that cannot be read at all (not UTF-8, not JSON, nested too deeply, not an object, a folder) is
moved aside under a name of its own (`settings.json.bad`, then `.bad-2`, ...) and ldstudio
starts with defaults. Values of the wrong type are dropped one by one and the rest kept; the
file as it was is kept aside first. Either way the user's hand edit is never lost, and
`Settings.load_problems` says what happened, once.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ldstudio.core import paths
from ldstudio.core.atomic import atomic_file
from ldstudio.core.hires import HiresSettings
from ldstudio.core.options import EngineOptions
from ldstudio.core.params import PREVIEW_INTERVAL_RANGE, PREVIEW_METHODS, GenerationParams
from ldstudio.core.upscale import UpscaleSettings

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
RECENT_PROMPTS_MAX = 20
# Where jobs run: this computer's engine, or an `ldstudio serve` server (Settings → Engine).
ENGINE_LOCAL, ENGINE_SERVER = "local", "server"
ENGINES: tuple[str, ...] = (ENGINE_LOCAL, ENGINE_SERVER)


@dataclass(frozen=True)
class ServerTarget:
    """An `ldstudio serve` server the engine runs jobs on: its URL and --api-auth login."""

    url: str
    user: str = ""
    password: str = field(default="", repr=False)  # never in a repr, so never in a log

    def validate(self) -> ServerTarget:
        problem = server_url_problem(self.url)
        if problem:
            raise ValueError(problem)
        if self.password and not self.user:
            raise ValueError("server user: empty, but a password is given; give both or neither")
        if ":" in self.user:
            raise ValueError(f"server user: {self.user!r} has a ':'; HTTP Basic auth forbids it")
        return self


@dataclass
class Settings:
    """What the app remembers between runs. Byte blobs (Qt geometry) are stored as base64."""

    last_params: dict[str, Any] = field(default_factory=dict)
    # The parameter pane's Hires fix group: HiresSettings.to_dict() when on, {} when off.
    last_hires: dict[str, Any] = field(default_factory=dict)
    # The Upscale dialog's last settings (UpscaleSettings.to_dict()); {}: none used yet.
    last_upscale: dict[str, Any] = field(default_factory=dict)
    window_geometry: str = ""
    window_state: str = ""
    splitters: dict[str, str] = field(default_factory=dict)
    library_folder: str = ""  # empty: <data folder>/library
    preview_method: str = "latent2rgb"
    preview_interval: int = 1
    model_folders: list[str] = field(default_factory=list)
    recent_prompts: list[str] = field(default_factory=list)
    engine_options: dict[str, Any] = field(default_factory=dict)  # EngineOptions.to_dict()
    engine: str = ENGINE_LOCAL  # one of ENGINES
    server_url: str = ""  # e.g. http://gpu-box:7860, used when engine is "server"
    server_user: str = ""
    # Kept in this file like every other setting (written private to the user, mode 0600);
    # never logged.
    server_password: str = field(default="", repr=False)
    # Not saved: what load_settings kept aside or dropped, for the window to show once.
    load_problems: list[str] = field(default_factory=list, compare=False, repr=False)

    def params(self) -> GenerationParams | None:
        """The last parameters, or None when there are none or they no longer validate."""
        if not self.last_params:
            return None
        try:
            return GenerationParams.from_dict(self.last_params)
        except (ValueError, TypeError) as exc:
            log.warning("ignoring saved parameters: %s", exc)
            return None

    def hires(self) -> HiresSettings | None:
        """The last hires fix, or None when it was off (or no longer validates)."""
        if not self.last_hires:
            return None
        try:
            return HiresSettings.from_dict(self.last_hires)
        except (ValueError, TypeError) as exc:
            log.warning("ignoring the saved hires fix: %s", exc)
            return None

    def upscale(self) -> UpscaleSettings:
        """The Upscale dialog's last settings; the defaults when there are none (or they no
        longer validate)."""
        if not self.last_upscale:
            return UpscaleSettings()
        try:
            return UpscaleSettings.from_dict(self.last_upscale)
        except (ValueError, TypeError) as exc:
            log.warning("ignoring the saved upscale settings: %s", exc)
            return UpscaleSettings()

    @property
    def uses_server(self) -> bool:
        return self.engine == ENGINE_SERVER

    def server_target(self) -> ServerTarget | None:
        """The server jobs run on, or None for this computer (or a server URL that is not
        valid: the window then says so and runs jobs here)."""
        if not self.uses_server:
            return None
        try:
            return ServerTarget(self.server_url, self.server_user, self.server_password).validate()
        except ValueError as exc:
            log.warning("not using the saved server: %s", exc)
            return None

    def set_server_target(self, target: ServerTarget | None) -> None:
        """Run jobs on `target` (validated), or on this computer for None; the server's
        address and login stay saved either way, for switching back."""
        if target is None:
            self.engine = ENGINE_LOCAL
            return
        target.validate()
        self.engine = ENGINE_SERVER
        self.server_url = target.url.strip()
        self.server_user = target.user
        self.server_password = target.password

    def library_dir(self) -> Path:
        """The library the app opens (takes effect at start-up)."""
        return Path(self.library_folder) if self.library_folder else paths.home_dir() / "library"

    def remember_prompt(self, prompt: str) -> None:
        """Put `prompt` first in the recent list (no duplicates, bounded)."""
        prompt = prompt.strip()
        if not prompt:
            return
        recent = [p for p in self.recent_prompts if p != prompt]
        self.recent_prompts = [prompt, *recent][:RECENT_PROMPTS_MAX]


_SAVED = tuple(f.name for f in dataclasses.fields(Settings) if f.name != "load_problems")


def settings_path() -> Path:
    return paths.home_dir() / SETTINGS_FILE


def load_settings(path: Path | None = None) -> Settings:
    """Read settings; defaults when the file is absent; a broken file is moved aside, values
    of the wrong type are dropped (the rest kept). Problems are logged and listed in
    `load_problems`."""
    path = path or settings_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Settings()
    except OSError as exc:  # a folder, no permission
        return _unreadable(path, exc.strerror or str(exc))
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return _unreadable(path, "it is not UTF-8 text")
    except RecursionError:
        return _unreadable(path, "it is nested too deeply")
    except ValueError as exc:
        return _unreadable(path, f"it is not valid JSON: {exc}")
    if not isinstance(data, dict):
        return _unreadable(path, f"expected a JSON object, got {_kind(data)}")
    values: dict[str, Any] = {}
    dropped: list[str] = []
    for name, value in data.items():
        if name in _CHECKS:  # other keys: written by a newer version, left in the file
            values[name] = _checked(name, value, dropped)
    settings = Settings(**{k: v for k, v in values.items() if v is not _DROP})
    if dropped:
        settings.load_problems.append(_drop_values(path, raw, data, values, dropped))
        log.warning("%s", settings.load_problems[-1])
    return settings


def save_settings(settings: Settings, path: Path | None = None) -> None:
    """Write settings atomically: the file is either the old one or the complete new one."""
    path = path or settings_path()
    data = {name: getattr(settings, name) for name in _SAVED}
    _write(path, data)


def _write(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True)
    with atomic_file(path, private=True) as handle:  # prompts and paths: the user's alone
        handle.write(text.encode("utf-8"))


def server_url_problem(url: str) -> str:
    """Why `url` cannot be an ldstudio server's address; "" when it can."""
    allowed = "allowed: http://host:port or https://host:port, e.g. http://127.0.0.1:7860"
    text = url.strip()
    if not text:
        return f"server URL: empty; {allowed}"
    try:
        parts = urlsplit(text)
        port = parts.port  # ValueError for a port that is not a number from 0 to 65535
    except ValueError as exc:
        return f"server URL: {text!r} is not valid ({exc}); {allowed}"
    if parts.scheme not in ("http", "https"):
        return f"server URL: {text!r} has no http:// or https:// scheme; {allowed}"
    if not parts.hostname:
        return f"server URL: {text!r} names no host; {allowed}"
    if port == 0:
        return f"server URL: {text!r} has port 0; {allowed}"
    if parts.query or parts.fragment or parts.username or parts.password:
        return (
            f"server URL: {text!r} has a query, a fragment or credentials in it (give the user "
            f"and password on their own); {allowed}"
        )
    return ""


# -- checking values ---------------------------------------------------------------------------

_DROP = object()
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")


def _base64(value: object) -> bool:
    return isinstance(value, str) and _BASE64.fullmatch(value) is not None


def _path_text(value: object) -> bool:
    return isinstance(value, str) and "\0" not in value


def _whole_in(low: int, high: int) -> Callable[[object], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


# Each saved value: a check and what it must be, for the message. Lists and maps are checked
# item by item, so one bad recent prompt does not cost the other nineteen.
_CHECKS: dict[str, tuple[Callable[[object], bool], str]] = {
    "last_params": (lambda v: isinstance(v, dict), "a map of generation parameters"),
    "last_hires": (lambda v: isinstance(v, dict), "a map of hires-fix settings"),
    "last_upscale": (lambda v: isinstance(v, dict), "a map of upscale settings"),
    "window_geometry": (_base64, "base64 text"),
    "window_state": (_base64, "base64 text"),
    "splitters": (_base64, "base64 text"),  # per item
    "library_folder": (_path_text, "a folder path as text"),
    "preview_method": (lambda v: v in PREVIEW_METHODS, f"one of {', '.join(PREVIEW_METHODS)}"),
    "preview_interval": (
        _whole_in(*PREVIEW_INTERVAL_RANGE),
        "a whole number from {} to {}".format(*PREVIEW_INTERVAL_RANGE),
    ),
    "model_folders": (_path_text, "a folder path as text"),  # per item
    "recent_prompts": (lambda v: isinstance(v, str), "text"),  # per item
    "engine_options": (lambda v: isinstance(v, dict), "a map of engine options"),
    "engine": (lambda v: v in ENGINES, f"one of {', '.join(ENGINES)}"),
    "server_url": (lambda v: isinstance(v, str), "a server URL as text"),
    "server_user": (lambda v: isinstance(v, str), "text"),
    "server_password": (lambda v: isinstance(v, str), "text"),
}
_LISTS = ("model_folders", "recent_prompts")
_SECRET = ("server_password",)
_MAPS = ("splitters",)
# Maps whose entries the dataclasses they belong to check, entry by entry.
_NESTED: dict[str, Callable[[dict[str, Any]], object]] = {
    "last_params": GenerationParams.from_dict,
    "last_hires": HiresSettings.from_dict,
    "last_upscale": UpscaleSettings.from_dict,
    "engine_options": EngineOptions.from_dict,
}


def _checked(name: str, value: object, dropped: list[str]) -> Any:
    """`value` with what fails its check left out (_DROP: all of it); `dropped` says what."""
    check, allowed = _CHECKS[name]

    def refuse(where: str, bad: object) -> None:
        # The problem is logged: a password's value never is.
        shown = "value not shown" if name in _SECRET else _short(bad)
        dropped.append(f"{where} ({shown}; allowed: {allowed})")

    if name in _LISTS or name in _MAPS:
        many = name in _LISTS
        if not isinstance(value, list if many else dict):
            whole = f"a list, each item {allowed}" if many else f"a map, each value {allowed}"
            dropped.append(f"{name} ({_kind(value)}; allowed: {whole})")
            return _DROP
        pairs = list(enumerate(value) if isinstance(value, list) else value.items())
        for key, item in pairs:
            if not check(item):
                refuse(f"{name}[{key}]" if many else f"{name}[{key!r}]", item)
        good = [(key, item) for key, item in pairs if check(item)]
        return [item for _key, item in good] if many else dict(good)
    if not check(value):
        refuse(name, value)
        return _DROP
    if name in _NESTED and isinstance(value, dict):
        return _nested(name, value, dropped)
    return value


# At most this many entries that each fail alone are tried together, in every grouping.
_TOGETHER_MOST = 6


def _nested(name: str, value: dict[str, Any], dropped: list[str]) -> dict[str, Any]:
    """The entries of `value` that its dataclass accepts: all of them when they build
    together, else those that build added one at a time, then any that build only beside
    each other (a hires size's width and height; an upscale's tile and its overlap)."""
    build = _NESTED[name]
    # GenerationParams requires a prompt; a stand-in tests the other entries on their own.
    base: dict[str, Any] = {"prompt": ""} if name == "last_params" else {}

    def refusal(entries: dict[str, Any]) -> Exception | None:
        try:
            build({**base, **entries})
        except (TypeError, ValueError) as exc:
            return exc
        return None

    if refusal(value) is None:
        return dict(value)
    kept: dict[str, Any] = {}
    why: dict[str, Exception] = {}
    pending = list(value)
    added = True
    while pending and added:  # an entry taken may make another one valid
        added = False
        for key in list(pending):
            problem = refusal({**kept, key: value[key]})
            if problem is None:
                kept[key] = value[key]
                pending.remove(key)
                added = True
            else:
                why[key] = problem
    if 1 < len(pending) <= _TOGETHER_MOST:
        groups = (
            group
            for size in range(len(pending), 1, -1)
            for group in itertools.combinations(pending, size)
        )
        for group in groups:
            if refusal({**kept, **{key: value[key] for key in group}}) is None:
                kept.update({key: value[key] for key in group})
                pending = [key for key in pending if key not in group]
                break
    for key in pending:
        dropped.append(f"{name}.{key} ({why[key]})")
    return {key: item for key, item in value.items() if key in kept}


def _kind(value: object) -> str:
    names = {dict: "a map", list: "a list", str: "text", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a number")


def _short(value: object) -> str:
    if isinstance(value, dict | list):
        return _kind(value)
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


# -- keeping the user's file --------------------------------------------------------------------


def _aside_name(path: Path) -> Path:
    """settings.json.bad, then .bad-2, ...: each broken file keeps a name of its own."""
    for n in itertools.count(1):
        target = path.with_name(f"{path.name}.bad" + ("" if n == 1 else f"-{n}"))
        if not os.path.lexists(target):
            return target
    raise AssertionError("unreachable")


def _unreadable(path: Path, reason: str) -> Settings:
    """Move the file (or folder) aside under an unused name; defaults, saying so."""
    target = _aside_name(path)
    try:
        os.rename(path, target)
    except OSError as exc:
        problem = (
            f"settings: {path} could not be read ({reason}) nor moved aside "
            f"({exc.strerror or exc}); ldstudio started with default settings"
        )
    else:
        problem = (
            f"settings: {path} could not be read ({reason}); it is kept as {target.name} "
            "beside it, and ldstudio started with default settings"
        )
    log.warning("%s", problem)
    return Settings(load_problems=[problem])


def _drop_values(
    path: Path, raw: bytes, data: dict[str, Any], values: dict[str, Any], dropped: list[str]
) -> str:
    """Keep a copy of the file as it was, then rewrite it without the dropped values (so the
    next start is quiet); the message for the user."""
    listed = "; ".join(dropped)
    while True:
        target = _aside_name(path)
        try:
            with open(target, "xb") as handle:  # "x": never over a copy made meanwhile
                handle.write(raw)
        except FileExistsError:
            continue
        except OSError as exc:
            return (
                f"settings: {path}: ignored {listed}. The file is left as it was (a copy could "
                f"not be written: {exc.strerror or exc}); the other settings apply"
            )
        break
    cleaned = {k: v for k, v in data.items() if values.get(k, v) is not _DROP}
    cleaned.update({k: v for k, v in values.items() if v is not _DROP})
    try:
        _write(path, cleaned)
    except OSError as exc:
        log.warning("settings: %s could not be rewritten: %s", path, exc)
    return (
        f"settings: {path}: dropped {listed}; the other settings apply. The file as it was is "
        f"kept as {target.name} beside it"
    )
