"""What each commit costs per request, told apart from the noise of a busy machine.

`python bench/commit_profile.py COMMIT [COMMIT ...]` checks each commit out into a temporary
git worktree (the working tree is not touched), runs bench/profile_server.py (this checkout's)
against that commit's server code (core and plugins put first on PYTHONPATH), once with
non-streamed chats and once with 20-chunk streams at c=1, and prints per request: the Python
function calls the server made (within ±1 % for the same code, whatever else runs on the
machine) and the profiled CPU time of its event-loop thread (inflated by the profiler and
swinging with the load; compare commits with each other, not with the overhead benchmark).
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import tempfile
from pathlib import Path

from common import HERE, tree_pythonpath, worktree


def profile(tree: Path, kind: str, requests: int, out: Path) -> tuple[float, float]:
    """Calls and profiled CPU ms per request of `kind` requests to the server in `tree`."""
    env = {**os.environ, "PYTHONPATH": tree_pythonpath(tree)}
    command = [sys.executable, str(HERE / "profile_server.py"), "--concurrency", "1"]
    command += ["--requests", str(requests), "--only", kind, "--save", str(out)]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)
    raw = pstats.Stats(str(out)).stats  # type: ignore[attr-defined]
    calls = sum(entry[1] for entry in raw.values()) / requests
    return calls, sum(entry[2] for entry in raw.values()) / requests * 1000


def main() -> None:
    """Profile each commit and print one Markdown row per commit."""
    parser = argparse.ArgumentParser()
    parser.add_argument("commits", nargs="+")
    parser.add_argument("--requests", type=int, default=300, help="of each kind, per commit")
    args = parser.parse_args()
    print("| commit | calls/chat | profiled ms/chat | calls/stream | profiled ms/stream |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for commit in args.commits:
            with worktree(commit, Path(tmp)) as tree:
                chat = profile(tree, "chat", args.requests, Path(tmp) / "chat.prof")
                stream = profile(tree, "stream", args.requests, Path(tmp) / "stream.prof")
            figures = f"{chat[0]:.0f} | {chat[1]:.2f} | {stream[0]:.0f} | {stream[1]:.2f}"
            print(f"| {commit} | {figures} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
