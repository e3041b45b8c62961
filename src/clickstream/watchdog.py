"""Run a command and end it when our parent goes away, however the parent ends.

``python -m clickstream.watchdog [--grace SECONDS] -- CMD ARGS...``: the parent keeps the write
end of our stdin. When the parent exits, even by SIGKILL, the pipe closes, reading stdin returns
EOF, and the child is terminated (SIGTERM, then SIGKILL after the grace period). SIGTERM or
SIGINT sent to the watchdog do the same. On Linux the child also gets ``PR_SET_PDEATHSIG`` so
that it dies with the watchdog if the watchdog itself is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from types import FrameType

from clickstream.children import die_with_parent

GRACE_S = 5.0


def terminate(child: subprocess.Popen[bytes], grace: float = GRACE_S) -> int:
    """SIGTERM the child, SIGKILL it after ``grace`` seconds; return its exit code."""
    if child.poll() is None:
        child.terminate()
        try:
            return child.wait(grace)
        except subprocess.TimeoutExpired:
            child.kill()
    return child.wait()


def main(argv: list[str]) -> int:
    grace = GRACE_S
    if argv[:1] == ["--grace"] and len(argv) > 1:
        grace = float(argv[1])
        argv = argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print(
            "usage: python -m clickstream.watchdog [--grace SECONDS] -- CMD [ARGS...]",
            file=sys.stderr,
        )
        return 2
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent())
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch_parent() -> None:
        try:
            while os.read(sys.stdin.fileno(), 4096):
                pass
        except OSError:
            pass
        stop.set()

    threading.Thread(target=watch_parent, daemon=True).start()
    while not stop.is_set() and child.poll() is None:
        stop.wait(0.2)
    code = terminate(child, grace)
    return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell says


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
