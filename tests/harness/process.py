"""A child process with its output in a log file, stopped by its own PID."""

import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

# The project's root: every process runs there, as startup.sh does.
ROOT = Path(__file__).resolve().parent.parent.parent
PYTHON = sys.executable
START_TIMEOUT = 20
STOP_TIMEOUT = 10


class Process:
    """A child process with its output in a log file; stopped by its own PID."""

    # Whether it leads a process group of its own (with the children it
    # starts), to be stopped together by its PID.
    own_group = False

    def __init__(self, name: str, log_path: str | Path) -> None:
        self.name = name
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, args: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.own_group,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL after `timeout`; always waits for the PID."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)

    def kill(self) -> None:
        """SIGKILL at once: a crash, no clean-up of any kind."""
        if self.proc is not None and self.alive:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)

    def rss(self) -> int | None:
        """Resident memory in bytes (from /proc), or None when not running."""
        if self.proc is None:
            return None
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
