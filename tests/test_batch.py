"""`ldstudio batch`: prompt lists and JSON-lines requests, the whole list checked first, and
resuming after a kill (a real SIGKILL of a running batch) without redoing finished lines."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ldstudio.cli import main, runs
from ldstudio.cli.batch import STATE_SUFFIX, BatchState, line_digest
from ldstudio.cli.common import EXIT_BAD_INPUT, EXIT_OK
from ldstudio.core.events import StepProgress
from ldstudio.core.library import LibraryStore
from ldstudio.core.metadata import read_ldstudio_params
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request, to_portable
from ldstudio.core.settings import load_settings
from ldstudio.engine.fake import FakeBackend

PROMPTS = "# my list\na red cat\n\n   # indented comment\na blue dog\na green fox\n"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeBackend:
    backend = FakeBackend()
    monkeypatch.setattr(runs, "make_backend", lambda options, blobs: backend)
    return backend


def _library_prompts() -> list[str]:
    with LibraryStore(load_settings().library_dir()) as store:
        return sorted(e.prompt for e in store.entries(store.ids()))


def test_a_prompt_list_runs_each_line_with_generate_options_and_records_it(
    fake, tmp_path, capsys
) -> None:
    listing = tmp_path / "prompts.txt"
    listing.write_text(PROMPTS, encoding="utf-8")
    assert main(["batch", str(listing), "--steps", "3", "--seed", "11", "--cfg", "4"]) == EXIT_OK
    out = capsys.readouterr()
    paths = out.out.split()
    assert len(paths) == 3
    made = [read_ldstudio_params(Path(p)) for p in paths]
    assert [p.prompt for p in made] == ["a red cat", "a blue dog", "a green fox"]
    assert {(p.steps, p.seed, p.guidance_scale) for p in made} == {(3, 11, 4.0)}
    assert "line 3/3 done: line 6, 1 image(s)" in out.err and "ETA" in out.err
    state = tmp_path / f"prompts.txt{STATE_SUFFIX}"
    records = [json.loads(line) for line in state.read_text().splitlines()]
    assert [(r["line"], r["sha256"]) for r in records] == [
        (2, line_digest("a red cat")),
        (5, line_digest("a blue dog")),
        (6, line_digest("a green fox")),
    ]
    assert records[0]["images"] == [paths[0]]
    # Run again: every line is done, nothing is made.
    assert main(["batch", str(listing)]) == EXIT_OK
    out = capsys.readouterr()
    assert "skipping 3 line(s) already done" in out.err and "nothing to do" in out.err
    assert len(_library_prompts()) == 3 and len(fake.jobs_run) == 3


def test_json_lines_take_flat_fields_portable_and_local_requests(fake, tmp_path, capsys) -> None:
    portable = to_portable(
        Request.txt2img(GenerationParams(prompt="portable one", steps=2, seed=3))
    )
    local = Request.txt2img(GenerationParams(prompt="local one", steps=2, seed=4)).to_dict()
    listing = tmp_path / "jobs.jsonl"
    listing.write_text(
        "\n".join(
            [
                json.dumps({"prompt": "flat one", "steps": 5, "scheduler": "DDIM"}),
                json.dumps(portable),
                "# a comment",
                json.dumps(local),
            ]
        ),
        encoding="utf-8",
    )
    assert main(["batch", str(listing), "--steps", "2", "--cfg", "6", "--json"]) == EXIT_OK
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "finished" and [r["line"] for r in result["lines"]] == [1, 2, 4]
    made = [read_ldstudio_params(Path(r["images"][0])) for r in result["lines"]]
    # A flat object sets its fields over generate's options; a request is taken as it is.
    assert (made[0].prompt, made[0].steps, made[0].scheduler, made[0].guidance_scale) == (
        "flat one", 5, "DDIM", 6.0
    )  # fmt: skip
    assert (made[1].prompt, made[1].seed, made[1].guidance_scale) == ("portable one", 3, 7.0)
    assert (made[2].prompt, made[2].seed) == ("local one", 4)


def test_bad_lines_are_named_by_number_and_nothing_runs(fake, tmp_path, capsys) -> None:
    listing = tmp_path / "jobs.jsonl"
    listing.write_text(
        '{"prompt": "fine"}\n{"prompt": "too many", "steps": 999}\nnot json\n\n[1, 2]\n'
        '{"steps": 3}\n{"prompt": "bad model", "model": "no-such-model"}\n',
        encoding="utf-8",
    )
    assert main(["batch", str(listing)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "5 bad line(s)" in err and "nothing was run" in err and "--skip-invalid" in err
    assert "line 2: steps: 999 is out of range; allowed: 1 to 150" in err
    assert "line 3: not valid JSON" in err
    assert "line 5: expected a JSON object (a request), got list" in err
    assert "line 6: prompt: missing" in err
    assert "line 7: --model: 'no-such-model' is neither" in err
    assert "line 1:" not in err and fake.jobs_run == []
    # --skip-invalid runs the good line and still names the bad ones.
    assert main(["batch", str(listing), "--skip-invalid", "--steps", "1"]) == EXIT_OK
    out = capsys.readouterr()
    assert "skipping 5 bad line(s)" in out.err and "line 2: steps: 999" in out.err
    assert _library_prompts() == ["fine"]


def test_a_prompt_line_is_checked_as_generate_checks_its_prompt(fake, tmp_path, capsys) -> None:
    listing = tmp_path / "prompts.txt"
    listing.write_text("a cat\n", encoding="utf-8")
    assert main(["batch", str(listing), "--steps", "0"]) == EXIT_BAD_INPUT
    assert "line 1: steps: 0 is out of range" in capsys.readouterr().err
    assert main(["batch", str(tmp_path / "missing.txt")]) == EXIT_BAD_INPUT
    assert "does not exist" in capsys.readouterr().err


def test_a_torn_state_line_is_ignored_and_a_changed_line_is_made_again(tmp_path) -> None:
    state_path = tmp_path / "list.state"
    first = {"line": 1, "sha256": line_digest("a cat"), "images": []}
    state_path.write_text(json.dumps(first) + "\n" + '{"line": 2, "sha2', encoding="utf-8")
    state = BatchState(state_path)
    assert state.done == {(1, line_digest("a cat"))}
    from ldstudio.cli.batch import Line

    request = Request.txt2img(GenerationParams(prompt="x"))
    assert state.finished(Line(1, line_digest("a cat"), request))
    assert not state.finished(Line(1, line_digest("a dog"), request))  # edited since
    assert not state.finished(Line(2, line_digest("a cat"), request))  # moved


_KILLABLE = textwrap.dedent(
    """
    import sys
    from ldstudio.cli import main, runs
    from ldstudio.engine.fake import FakeBackend
    runs.make_backend = lambda options, blobs: FakeBackend(step_delay=0.1)
    sys.exit(main(["batch", sys.argv[1], "--steps", "4", "--seed", "1"]))
    """
)


def test_a_killed_batch_resumes_with_only_the_rest(fake, tmp_path, ldstudio_home, capsys) -> None:
    listing = tmp_path / "prompts.txt"
    prompts = [f"prompt number {i}" for i in range(6)]
    listing.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    state_path = tmp_path / f"prompts.txt{STATE_SUFFIX}"
    env = {**os.environ, "LDSTUDIO_HOME": str(ldstudio_home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE, str(listing)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if state_path.exists() and len(state_path.read_text().splitlines()) >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)  # no cleanup of any kind: a power cut, an OOM kill
    proc.wait(timeout=30)
    done = [json.loads(line)["line"] for line in state_path.read_text().splitlines()]
    assert 2 <= len(done) < 6 and done == list(range(1, len(done) + 1))
    before = len(_library_prompts())
    assert main(["batch", str(listing), "--steps", "4", "--seed", "1"]) == EXIT_OK
    err = capsys.readouterr().err
    assert f"skipping {len(done)} line(s) already done" in err
    assert len(fake.jobs_run) == 6 - len(done)  # only the rest was made
    made = _library_prompts()
    assert len(made) == before + 6 - len(done)
    assert set(made) == set(prompts)
    records = [json.loads(line)["line"] for line in state_path.read_text().splitlines()]
    assert sorted(records) == [1, 2, 3, 4, 5, 6]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_covers_the_whole_run_with_an_eta(monkeypatch) -> None:
    clock = iter([100.0, 130.0, 130.0])  # started; one line done 30 s in; asked again
    monkeypatch.setattr(runs.time, "perf_counter", lambda: next(clock))
    stream = _Terminal()
    progress = runs.RunProgress(stream, 4, noun="line")
    progress.position = {7: 1, 8: 2}
    progress(StepProgress(8, 0, 5, 10, 1.0, 5.0))  # before any line is done: no ETA yet
    assert (
        "[###......" in stream.getvalue() and "0/4 · line 2 step 5/10 · ETA --" in stream.getvalue()
    )
    progress.finished(1, "line 3, 1 image(s)")  # 30 s a line, 3 lines to go
    assert "line 1/4 done: line 3, 1 image(s) · ETA 1m30s" in stream.getvalue()


def test_ctrl_c_stops_a_batch_cleanly_and_a_rerun_does_the_rest(
    fake, tmp_path, ldstudio_home, capsys
) -> None:
    listing = tmp_path / "prompts.txt"
    listing.write_text("".join(f"line {i}\n" for i in range(5)), encoding="utf-8")
    state_path = tmp_path / f"prompts.txt{STATE_SUFFIX}"
    env = {**os.environ, "LDSTUDIO_HOME": str(ldstudio_home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE, str(listing)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if state_path.exists() and state_path.read_text().count("\n") >= 1:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "cancelling" in stderr and "left for a rerun" in stderr
    done = len(state_path.read_text().splitlines())
    assert 1 <= done < 5 and len(stdout.split()) == done  # each finished line's image path
    assert main(["batch", str(listing), "--steps", "4", "--seed", "1"]) == EXIT_OK
    assert f"skipping {done} line(s) already done" in capsys.readouterr().err
    assert len(fake.jobs_run) == 5 - done
