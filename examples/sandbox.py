"""Run untrusted Python code in a rootless sandbox: no network, a read-only root, a time
limit, and a memory cap where the machine gives this user one (a delegated cgroup subtree,
else an address-space rlimit). Works as a normal user; see docs/pycontain.md, "Rootless".

    python3 examples/sandbox.py < untrusted.py
"""

import sys

import pycontain


def run_untrusted(code: str, seconds: float = 5, memory: str = "256M") -> pycontain.Result:
    return pycontain.run(
        ["python3", "-I", "-c", code],   # -I: no user site, no environment
        net="none",                      # loopback only
        read_only=True,                  # nothing on / can be changed
        memory=memory,                   # a cgroup limit if delegated, else RLIMIT_AS
        limit_fallback="rlimit",
        pids=64,
        timeout=seconds,                 # then SIGKILL: exit code 137
        capture_output=True,
    )


if __name__ == "__main__":
    res = run_untrusted(sys.stdin.read())
    sys.stdout.write(res.stdout.decode(errors="replace"))
    sys.stderr.write(res.stderr.decode(errors="replace")[-2000:])
    sys.exit(res.exit_code)
