"""Tests of claimkit.sandbox: generated code runs only in a guarded child process."""

from __future__ import annotations

import builtins
import os
import re
import textwrap
import time
from pathlib import Path

import pytest

from claimkit.sandbox import CheckResult, Limits, Program, run_checks, run_program

# Short limits keep the tests fast; the defaults are for real answers.
FAST = dict(timeout=3.0, limits=Limits(memory_bytes=256 << 20))


def run(source: str, checks: str = "", **kwargs) -> CheckResult:
    return run_program(Program(textwrap.dedent(source), textwrap.dedent(checks)), **{**FAST, **kwargs})


def test_a_correct_program_passes_and_a_wrong_one_fails_at_the_failing_assert():
    code = "def add(a, b):\n    return a + b\n"
    assert run(code, "assert add(2, 3) == 5\n").passed
    result = run("def add(a, b):\n    return a - b\n", "assert add(1, 1) == 0\nassert add(2, 3) == 5\n")
    assert result.outcome == "failed"
    assert result.reason == "AssertionError (<checks> line 2: assert add(2, 3) == 5)"


def test_an_exception_or_a_syntax_error_is_an_error_with_its_reason():
    result = run("def f():\n    return {}['missing']\n", "f()\n")
    assert result.outcome == "error"
    assert result.reason.startswith("KeyError: 'missing' (<program> line 2")
    result = run("def f(:\n    pass\n")
    assert (result.outcome, result.reason) == ("error", "SyntaxError in the program, line 1: invalid syntax")


def test_exiting_does_not_pass():
    for source in ("import sys\nsys.exit(0)\n", "exit()\n", "import os\nos._exit(0)\n"):
        assert run(source, "assert True\n").outcome == "error", source


def test_an_infinite_loop_hits_the_timeout_and_is_killed():
    start = time.monotonic()
    result = run("while True:\n    pass\n", timeout=1.0)
    assert result.outcome == "timeout" and result.reason == "no result within 1 s"
    assert time.monotonic() - start < 3.0


@pytest.mark.parametrize(
    "bomb", ["x = bytearray(10**11)\n", "chunks = [bytearray(10**7) for _ in range(10**5)]\n"]
)
def test_a_memory_bomb_is_stopped_by_the_memory_limit(bomb):
    result = run(bomb)
    assert (result.outcome, result.reason) == ("error", "MemoryError: the memory limit was reached")


@pytest.mark.parametrize(
    "attempt, blocked",
    [
        ("import os\nos.system('touch {marker}')\n", "os.system"),
        ("import os\nos.popen('touch {marker}').read()\n", "os.popen"),
        ("import subprocess\nsubprocess.run(['touch', '{marker}'])\n", "subprocess.Popen"),
        ("import subprocess\nsubprocess.check_output('touch {marker}', shell=True)\n", "subprocess.Popen"),
        ("import os\nif os.fork() == 0:\n    open('{marker}', 'w').close()\n", "os.fork"),
        ("import os, signal\nos.kill(os.getppid(), signal.SIGTERM)\n", "os.kill"),
        ("import threading\nthreading.Thread(target=print).start()\n", "starting a thread"),
        ("import os\nos.remove('{marker}.keep')\n", "os.remove outside the sandbox directory"),
        ("import shutil\nshutil.rmtree('{keep_dir}')\n", "shutil.rmtree outside the sandbox directory"),
        ("from pathlib import Path\nPath('{marker}').write_text('x')\n", "open('{marker}', 'w')"),
        ("import os\nos.open('{marker}', os.O_CREAT | os.O_WRONLY)\n", "os.open('{marker}') for writing"),
    ],
)
def test_dangerous_calls_fail_without_side_effects(tmp_path, attempt, blocked):
    marker = tmp_path / "marker"
    (tmp_path / "marker.keep").write_text("still here")
    keep_dir = tmp_path / "kept"
    keep_dir.mkdir()
    fill = dict(marker=marker, keep_dir=keep_dir)
    result = run(attempt.format(**fill))
    assert result.outcome == "error"
    assert result.reason.startswith(f"blocked: {blocked.format(**fill)}"), result.reason
    assert not marker.exists()
    assert (tmp_path / "marker.keep").read_text() == "still here" and keep_dir.is_dir()


def test_a_blocked_call_fails_the_program_even_when_it_is_caught(tmp_path):
    source = f"import os\ntry:\n    os.system('touch {tmp_path}/marker')\nexcept BaseException:\n    pass\n"
    result = run(source, "assert True\n")
    assert result.outcome == "error" and result.reason == "blocked: os.system (the program caught the error)"
    assert not (tmp_path / "marker").exists()


@pytest.mark.parametrize(
    "attempt",
    [
        "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM)\n",
        "import socket\nsocket.create_connection(('93.184.216.34', 80), timeout=1)\n",
        "import socket\nsocket.getaddrinfo('example.com', 443)\n",
        "import urllib.request\nurllib.request.urlopen('http://93.184.216.34/', timeout=1)\n",
    ],
)
def test_the_network_is_unreachable(attempt):
    result = run(attempt)
    assert result.outcome == "error"
    assert re.search(r"network is disabled in the sandbox|URLError", result.reason), result.reason


def test_network_libraries_still_import():
    """Refusing sockets must not break imports that probe them (urllib3 checks for IPv6 on import)."""
    assert run("import requests\nimport urllib3\nimport ssl\n").passed


def test_files_land_in_a_temporary_directory_that_is_removed_afterwards():
    source = """
        import os, tempfile
        from pathlib import Path
        Path("notes.txt").write_text("hello")
        with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as fh:
            fh.write("a,b")
        here = os.path.realpath(os.getcwd())
        assert Path("notes.txt").read_text() == "hello"
        assert os.path.realpath(fh.name).startswith(here + os.sep)
        assert os.environ["HOME"] == os.environ["TMPDIR"] == here
        assert False, here  # report the directory through the reason
    """
    result = run(source)
    assert result.outcome == "failed", result.reason
    directory = Path(re.match(r"AssertionError: (\S+) \(", result.reason).group(1))
    assert directory.name.startswith("claimkit-sandbox-")
    assert not directory.exists()


def test_files_may_be_changed_and_removed_inside_the_sandbox_directory():
    source = """
        import os, shutil, tempfile
        os.makedirs("a/b")
        open("a/b/c.txt", "w").write("1")
        os.rename("a/b/c.txt", "a/d.txt")
        shutil.rmtree("a")
        with tempfile.TemporaryDirectory() as scratch:
            open(os.path.join(scratch, "x"), "w").write("2")
        assert not os.path.exists("a")
    """
    assert run(source).passed


def test_the_file_size_limit_holds():
    result = run("open('big.bin', 'wb').write(b'x' * (32 << 20))\n")
    assert result.outcome == "error" and "File too large" in result.reason, result.reason


def test_nothing_runs_in_the_calling_process(monkeypatch):
    monkeypatch.setenv("CLAIMKIT_TEST_SECRET", "do-not-leak")
    source = f"""
        import builtins, os, sys
        builtins.claimkit_sandbox_was_here = True
        assert os.getpid() != {os.getpid()}
        assert "CLAIMKIT_TEST_SECRET" not in os.environ
        assert sys.flags.isolated and sys.dont_write_bytecode
    """
    assert run(source).passed
    assert not hasattr(builtins, "claimkit_sandbox_was_here")


def test_a_crash_of_the_interpreter_is_an_error():
    result = run("import faulthandler\nfaulthandler._sigsegv()\n")
    assert (result.outcome, result.reason) == ("error", "killed by SIGSEGV")


def test_the_program_cannot_forge_a_passing_report():
    source = 'import sys\nprint(\'{"outcome": "passed", "reason": ""}\')\nsys.stdout.flush()\n'
    assert run(source, "assert 1 == 2\n").outcome == "failed"


def test_run_checks_keeps_the_order_of_the_programs():
    programs = [Program(f"value = {i}\n", f"assert value == {i}\nassert value % 3 != 0\n") for i in range(9)]
    results = run_checks(programs, workers=2, progress=False, **FAST)
    assert [r.passed for r in results] == [i % 3 != 0 for i in range(9)]
    assert run_checks([], workers=2) == []
    assert run_checks(["assert True\n"], workers=1, progress=True, **FAST)[0].passed


def test_bad_arguments_say_what_to_pass():
    with pytest.raises(ValueError, match="memory_bytes must be a positive whole number"):
        Limits(memory_bytes=0)
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        run_program("pass\n", timeout=0)
    with pytest.raises(ValueError, match="workers must be a positive whole number"):
        run_checks(["pass\n"], workers=0)


def test_the_program_runs_as_a_module_that_is_not_main():
    source = """
        import dataclasses, pickle

        @dataclasses.dataclass(frozen=True)
        class Point:
            x: int

        assert pickle.loads(pickle.dumps(Point(1))) == Point(1)
        if __name__ == "__main__":
            raise RuntimeError("a demo block ran")
    """
    assert run(source).passed
