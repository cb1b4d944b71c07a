"""The child side of `claimkit.sandbox`: guard this process, run one program, report.

Never imported: `claimkit.sandbox` runs this file as a script (`python -I -B`) in a
fresh temporary directory and writes the request, one JSON object, to its stdin:
the program's `code` and `checks`, the sandbox directory `root` and the resource
`limits`. It answers with one JSON line on stdout, `{"outcome", "reason"}`. It must
work with the standard library alone and without claimkit on `sys.path`.

Before the program runs, in this order:
  1. stdin, stdout and stderr are pointed at /dev/null (the report keeps a private copy
     of stdout), so the program can neither read the request nor forge the report by
     printing;
  2. resource limits (`resource.setrlimit`): address space, CPU seconds, file size,
     open files, no core files, and no new processes where the kernel enforces it;
  3. the process leaves the network: a new, empty network namespace where the kernel
     allows it (`unshare(CLONE_NEWNET)`), and in every case socket creation and name
     lookups raise `OSError`, as on a machine without network;
  4. process, thread, signal, privilege and file-system functions are replaced by stubs in
     the spirit of HumanEval's `reliability_guard` (openai/human-eval,
     human_eval/execution.py); deleting, renaming, changing modes and writing files is
     allowed inside `root` only.

A stubbed call raises `SandboxViolation`, a BaseException, so that `except
Exception` in the program does not swallow it, and is recorded: a program that
made one fails even if it caught it. The guards stop accidents of generated code,
not a determined attacker in the same interpreter (ctypes is refused as an import,
but a program could still reach the kernel by other means); the process
boundary, the limits and the kill on timeout are what bound the damage.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import resource
import sys
import traceback
import types

# Outcomes, as claimkit.sandbox.Outcome names them.
PASSED, FAILED, ERROR = "passed", "failed", "error"
REASON_CHARS = 240
# Imports refused after the guards are in place: they would undo them.
REFUSED_MODULES = ("ctypes", "_ctypes", "resource", "psutil")
_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000


class SandboxViolation(BaseException):
    """The program called something the sandbox forbids (a BaseException: `except Exception` misses it)."""


def main() -> None:
    request = json.loads(sys.stdin.read())
    report = _private_stdout()
    _exit = os._exit  # the stubs replace os._exit; the runner still needs it
    _limit_resources(request["limits"])
    _leave_network()
    violations: list[str] = []
    _install_guards(os.path.realpath(request["root"]), violations)
    outcome, reason = _run(request["code"], request["checks"])
    if violations and outcome == PASSED:
        outcome, reason = ERROR, f"blocked: {violations[0]} (the program caught the error)"
    report.write(json.dumps({"outcome": outcome, "reason": reason[:REASON_CHARS]}) + "\n")
    report.flush()
    _exit(0)  # skip interpreter shutdown: atexit handlers and threads of the program


# -- running ------------------------------------------------------------------------


def _run(code: str, checks: str) -> tuple[str, str]:
    """Execute the program, then its checks, in one namespace; (outcome, reason)."""
    # A real module, so that what needs a class's module finds it (dataclasses, pickle); not
    # named "__main__", so `if __name__ == "__main__":` demo blocks of the answer stay off.
    module = types.ModuleType("__sandbox__")
    sys.modules[module.__name__] = module
    namespace = module.__dict__
    for label, source in (("program", code), ("checks", checks)):
        try:
            compiled = compile(source, f"<{label}>", "exec")
        except SyntaxError as exc:
            return ERROR, f"SyntaxError in the {label}, line {exc.lineno}: {exc.msg}"
        try:
            exec(compiled, namespace)  # noqa: S102 - this process exists to run it
        except AssertionError as exc:
            return FAILED, _describe(exc, {"program": code, "checks": checks})
        except SandboxViolation as exc:
            return ERROR, f"blocked: {exc}"
        except MemoryError:
            return ERROR, "MemoryError: the memory limit was reached"
        except SystemExit as exc:
            return ERROR, f"SystemExit({exc.code!r}) in the {label}: exiting is not passing"
        except BaseException as exc:  # noqa: BLE001 - any other exception fails the program
            return ERROR, _describe(exc, {"program": code, "checks": checks})
    return PASSED, ""


def _describe(exc: BaseException, sources: dict[str, str]) -> str:
    """'<Type>: <message> (<checks> line 3: assert f(1) == 2)' for the innermost frame of ours."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in ("<program>", "<checks>")]
    if frames:
        frame = frames[-1]
        lines = sources[frame.filename.strip("<>")].splitlines()
        line = lines[frame.lineno - 1].strip() if frame.lineno and frame.lineno <= len(lines) else ""
        text += f" ({frame.filename} line {frame.lineno}: {line})"
    return text


# -- isolation ----------------------------------------------------------------------


def _private_stdout() -> io.TextIOWrapper:
    """A copy of stdout for the report; fds 0, 1 and 2 then point at /dev/null."""
    report = io.TextIOWrapper(os.fdopen(os.dup(1), "wb"), encoding="utf-8")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    return report


def _limit_resources(limits: dict[str, int]) -> None:
    """Soft and hard limits alike, so the program cannot raise them again (unless it is root)."""
    wanted = {
        resource.RLIMIT_AS: limits["memory_bytes"],
        resource.RLIMIT_CPU: limits["cpu_seconds"],
        resource.RLIMIT_FSIZE: limits["file_size_bytes"],
        resource.RLIMIT_NOFILE: limits["open_files"],
        resource.RLIMIT_CORE: 0,
        # Counts every process and thread of the user: 0 forbids both for an unprivileged
        # user; root is exempt, which is why fork, exec and threads are also stubbed below
        # (so that a program behaves the same whoever runs the sandbox).
        resource.RLIMIT_NPROC: 0,
    }
    for which, value in wanted.items():
        _, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass  # a limit the platform does not support; the others still hold


def _leave_network() -> bool:
    """Move into a new network namespace (no interfaces up) if the kernel lets us; True if it did."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        # As root, a network namespace alone; otherwise inside a new user namespace.
        return any(libc.unshare(flags) == 0 for flags in (_CLONE_NEWNET, _CLONE_NEWUSER | _CLONE_NEWNET))
    except (OSError, AttributeError, ImportError):
        return False


def _install_guards(root: str, violations: list[str]) -> None:
    import shutil
    import socket
    import subprocess

    def blocked(name: str):
        def stub(*args, **kwargs):
            violations.append(name)
            raise SandboxViolation(f"{name} is not allowed in the sandbox")

        return stub

    def inside(path, dir_fd: int | None = None) -> bool:
        if isinstance(path, int):
            return True  # an open file descriptor: whatever opened it was checked
        path = os.fsdecode(os.fspath(path))
        if dir_fd is not None and not os.path.isabs(path):
            try:  # relative to an open directory (shutil.rmtree works this way)
                path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
            except OSError:
                return False
        real = os.path.realpath(path)
        return real == root or real.startswith(root + os.sep) or real == os.devnull

    def path_guarded(name: str, function, positions: tuple[int, ...]):
        """`function` with the path arguments at `positions` (the ones it changes) checked."""

        def guard(*args, **kwargs):
            paths = [args[i] for i in positions if i < len(args)]
            paths += [v for k, v in kwargs.items() if k in ("path", "src", "dst", "dest")]
            dir_fd = kwargs.get("dir_fd", kwargs.get("dst_dir_fd"))
            if kwargs.get("src_dir_fd") is not None or not all(inside(p, dir_fd) for p in paths):
                violations.append(f"{name} outside the sandbox directory")
                raise SandboxViolation(f"{name} outside the sandbox directory {root}")
            return function(*args, **kwargs)

        return guard

    def open_guarded(name: str, function):
        def guard(file, mode="r", *args, **kwargs):
            if any(c in mode for c in "wax+") and not inside(file):
                violations.append(f"{name} for writing outside the sandbox directory")
                shown = file if isinstance(file, int) else os.fsdecode(os.fspath(file))
                raise SandboxViolation(f"{name}({shown!r}, {mode!r}): writing outside the sandbox directory {root}")
            return function(file, mode, *args, **kwargs)

        return guard

    def os_open_guarded(function):
        writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

        def guard(path, flags, *args, **kwargs):
            if flags & writing and not inside(path, kwargs.get("dir_fd")):
                violations.append("os.open for writing outside the sandbox directory")
                shown = path if isinstance(path, int) else os.fsdecode(os.fspath(path))
                raise SandboxViolation(f"os.open({shown!r}) for writing outside the sandbox directory {root}")
            return function(path, flags, *args, **kwargs)

        return guard

    class NoNetworkSocket(socket.socket):
        """Sockets cannot be created: an OSError, as on a machine without network."""

        def __init__(self, *args, **kwargs):
            raise PermissionError("network is disabled in the sandbox (socket.socket)")

    def no_network(name: str):
        def stub(*args, **kwargs):
            raise PermissionError(f"network is disabled in the sandbox ({name})")

        return stub

    class BlockedPopen(subprocess.Popen):
        """A class, not a function, so code that subclasses Popen at import time still imports."""

        def __init__(self, *args, **kwargs):
            violations.append("subprocess.Popen")
            raise SandboxViolation("subprocess.Popen is not allowed in the sandbox")

        def __del__(self):
            pass

    # Network: sockets and name lookups, in socket and in _socket underneath.
    import _socket

    for module in (socket, _socket):
        module.socket = NoNetworkSocket
    for name in ("create_connection", "create_server", "socketpair", "fromfd", "getaddrinfo",
                 "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo"):
        for module in (socket, _socket):
            if hasattr(module, name):
                setattr(module, name, no_network(f"socket.{name}"))

    # Processes, signals, privileges, the interpreter's own exit: blocked outright, in os and posix.
    import posix

    for name in (
        "system", "popen", "fork", "forkpty", "vfork", "kill", "killpg", "_exit", "abort",
        "execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp", "execvpe",
        "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe",
        "posix_spawn", "posix_spawnp", "putenv", "unsetenv", "chroot", "fchdir", "fchmod", "fchown",
        "setuid", "setgid", "seteuid", "setegid", "setreuid", "setregid", "setresuid", "setresgid",
        "setgroups", "setsid", "setpgid", "plock",
    ):
        for module in (os, posix):
            if hasattr(module, name):
                setattr(module, name, blocked(f"os.{name}"))
    subprocess.Popen = BlockedPopen
    import _thread
    import threading

    _thread.start_new_thread = threading._start_new_thread = blocked("starting a thread")
    import _posixsubprocess

    _posixsubprocess.fork_exec = blocked("_posixsubprocess.fork_exec")
    builtins.exit = blocked("exit")
    builtins.quit = blocked("quit")

    # File system: changes allowed inside the sandbox directory only.
    first, both, second = (0,), (0, 1), (1,)
    for name, positions in (
        ("remove", first), ("unlink", first), ("rmdir", first), ("removedirs", first), ("rename", both),
        ("renames", both), ("replace", both), ("truncate", first), ("chmod", first), ("chown", first),
        ("lchown", first), ("lchmod", first), ("link", second), ("symlink", second), ("mkdir", first),
        ("makedirs", first), ("mkfifo", first), ("mknod", first), ("chdir", first), ("utime", first),
    ):
        for module in (os, posix):
            if hasattr(module, name):
                setattr(module, name, path_guarded(f"os.{name}", getattr(module, name), positions))
    for name, positions in (("rmtree", first), ("move", both), ("chown", first), ("copy", second),
                            ("copy2", second), ("copyfile", second), ("copytree", second)):
        setattr(shutil, name, path_guarded(f"shutil.{name}", getattr(shutil, name), positions))
    os.open = posix.open = os_open_guarded(os.open)
    builtins.open = io.open = open_guarded("open", io.open)

    # Modules that would undo the guards refuse to import (ImportError) from now on.
    for name in REFUSED_MODULES:
        sys.modules[name] = None  # type: ignore[assignment]


if __name__ == "__main__":
    main()
