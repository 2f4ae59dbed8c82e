#!/usr/bin/env python3
"""Start-up time to READY and idle memory of `ledge run` (issue 4).

    benches/startup.py --ledge PATH [--ledge PATH ...] [--qemu BINARY] [--runs N]

For each binary: runs `ledge run` on the quickstart config (embedded broker
on a free loopback port, a fresh data dir each run) `--runs` times, with a
NOTIFY_SOCKET this script listens on, and measures the time from spawn to
the READY=1 datagram (what systemd waits for with Type=notify). The
baseline, measured in the same run, is the spawn-to-exit time of
`ledge --version`: the cost of starting the process at all. Also reads
VmRSS of the first run two seconds after READY (idle, quickstart loaded).

With --qemu (e.g. qemu-aarch64-static) the binary runs under that
emulator, both for the READY runs and the baseline.

Prints one tab-separated `result` line per figure, like the other benches:
`result <key> <median> <min> <max> <unit> <note>`.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(REPO, "examples", "quickstart", "ledge.toml")
READY_TIMEOUT = 30.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quickstart_config(directory):
    """The quickstart config with its own port, data dir and absolute paths."""
    with open(QUICKSTART) as f:
        text = f.read()
    text = text.replace("127.0.0.1:1883", f"127.0.0.1:{free_port()}")
    text = text.replace('data_dir = "data"', f'data_dir = "{directory}/data"')
    text = text.replace('level = "info,ledge::invoke=debug,ledge::sensor=debug"', 'level = "warn"')
    base = os.path.dirname(QUICKSTART)
    text = re.sub(
        r'(module|file) = "([^"]+)"',
        lambda m: f'{m.group(1)} = "{os.path.normpath(os.path.join(base, m.group(2)))}"',
        text,
    )
    path = os.path.join(directory, "ledge.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def time_to_ready(command, measure_rss):
    with tempfile.TemporaryDirectory(prefix="ledge-startup-") as directory:
        config = quickstart_config(directory)
        notify = os.path.join(directory, "notify.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(notify)
        listener.settimeout(READY_TIMEOUT)
        env = dict(os.environ, NOTIFY_SOCKET=notify)
        env.pop("LEDGE_LOG", None)
        started = time.perf_counter()
        process = subprocess.Popen(
            command + ["run", "--config", config],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            while True:
                message = listener.recv(4096)
                if b"READY=1" in message:
                    ready = time.perf_counter() - started
                    break
            rss = None
            if measure_rss:
                time.sleep(2.0)
                # Under qemu-user this is the emulator's RSS, guest included.
                rss = rss_kib(process.pid)
        except socket.timeout:
            process.kill()
            _, err = process.communicate()
            sys.exit(f"no READY=1 within {READY_TIMEOUT}s from {command}:\n{err.decode(errors='replace')}")
        finally:
            listener.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return ready, rss


def time_to_exit(command):
    started = time.perf_counter()
    subprocess.run(command + ["--version"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def result(key, values, unit, note):
    values = sorted(values)
    print(
        f"result\t{key}\t{statistics.median(values):.2f}\t{values[0]:.2f}\t{values[-1]:.2f}\t{unit}\t{note}",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ledge", action="append", required=True, help="binary to measure (repeatable)")
    parser.add_argument("--label", action="append", help="key label per --ledge (default: file name)")
    parser.add_argument("--qemu", help="run the binaries under this emulator")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    labels = args.label or [os.path.basename(path) for path in args.ledge]
    if len(labels) != len(args.ledge):
        sys.exit("give one --label per --ledge")
    runs = max(1, min(args.runs, 200))
    for path, label in zip(args.ledge, labels):
        command = [os.path.abspath(path)]
        where = "native"
        if args.qemu:
            emulator = shutil.which(args.qemu)
            if emulator is None:
                sys.exit(f"{args.qemu} not found (apt-get install qemu-user-static)")
            command = [emulator] + command
            where = args.qemu
        exits = [time_to_exit(command) * 1000 for _ in range(runs)]
        ready = []
        idle_rss = None
        for n in range(runs):
            seconds, rss = time_to_ready(command, measure_rss=(n == 0))
            ready.append(seconds * 1000)
            idle_rss = rss if rss is not None else idle_rss
        result(f"startup_exit_{label}", exits, "ms", f"spawn to exit of `ledge --version` ({where}), the baseline")
        result(f"startup_ready_{label}", ready, "ms", f"spawn to READY=1, quickstart config ({where})")
        baseline = statistics.median(exits)
        ratio = statistics.median(ready) / baseline if baseline > 0 else float("nan")
        result(f"startup_ratio_{label}", [ratio], "x", "READY time / process start baseline")
        if idle_rss is not None:
            result(f"startup_idle_rss_{label}", [idle_rss / 1024], "MiB", f"VmRSS 2 s after READY ({where})")


if __name__ == "__main__":
    main()
