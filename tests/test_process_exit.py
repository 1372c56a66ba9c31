"""The entry point ends its process without module teardown, and loses nothing a normal exit would keep."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PROGRAM = textwrap.dedent(
    """
    import atexit, logging, sys, threading, time
    from pathlib import Path
    from trainspeed.process_exit import run_and_exit

    out = Path(sys.argv[1])
    code, thread = eval(sys.argv[2]), sys.argv[3] == "thread"

    class WritesAtTeardown:  # a module global: only the interpreter's teardown deletes it
        def __del__(self):
            (out / "teardown").write_text("ran")

    keeper = WritesAtTeardown()

    def entry():
        handler = logging.FileHandler(out / "train.log")
        logging.getLogger("job").addHandler(handler)
        logging.getLogger("job").warning("last line")  # buffered until logging's atexit shutdown
        atexit.register(lambda: (out / "atexit").write_text("ran"))
        if thread:  # a worker still writing when the entry returns: the exit must wait for it
            threading.Thread(target=lambda: (time.sleep(0.5), (out / "thread").write_text("done"))).start()
        print("printed", end="")  # stdout left unflushed
        raise SystemExit(code)

    run_and_exit(entry)
    """
)


def run(tmp_path: Path, code: object, thread: bool = False) -> subprocess.CompletedProcess:
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    args = [sys.executable, str(script), str(tmp_path), repr(code), "thread" if thread else "-"]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("code", "expected"), [(None, 0), (0, 0), (2, 2), (130, 130), ("no such run", 1)])
def test_the_exit_code_and_every_exit_step_are_kept(tmp_path, code, expected):
    result = run(tmp_path, code)
    assert result.returncode == expected, result.stderr
    assert result.stdout == "printed"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "train.log").read_text() == "last line\n"
    if isinstance(code, str):
        assert result.stderr.strip() == code
    assert not (tmp_path / "teardown").exists()  # the module teardown was skipped


def test_a_thread_still_running_gets_the_normal_exit_which_waits_for_it(tmp_path):
    result = run(tmp_path, 3, thread=True)
    assert result.returncode == 3, result.stderr
    assert (tmp_path / "thread").read_text() == "done"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "teardown").read_text() == "ran"  # the normal exit, teardown included
