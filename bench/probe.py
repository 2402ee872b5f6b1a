"""Run in a fresh interpreter by bench/run.py: import time of a handler module, or peak RSS of a function
handling one batch. Prints one JSON line."""

import json
import sys
import time


def import_time(target: str) -> None:
    started = time.perf_counter()
    if target == "boto3":
        import boto3  # noqa: F401
    else:
        sys.path.insert(0, target)  # functions/<name>: its app.py, as Lambda loads it
        import app  # noqa: F401
    print(json.dumps({"seconds": time.perf_counter() - started}))


def peak_rss(kind: str, port: str) -> None:
    import resource

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from bench_common import ingest_once, vendor_batch_once

    if kind == "ingest":
        ingest_once(100)
    else:
        vendor_batch_once(kind, 100, int(port))
    print(json.dumps({"peak_rss_mb": peak_rss_kb(resource) / 1024}))


def peak_rss_kb(resource) -> float:
    """This process's peak resident set (kB). Linux's VmHWM: `ru_maxrss` survives fork and exec, so in a
    child of the benchmark it reported the benchmark's own peak (140 MB), not the function's."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    peak = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak / 1024 if sys.platform == "darwin" else peak  # macOS counts bytes


if __name__ == "__main__":
    {"import": import_time, "rss": peak_rss}[sys.argv[1]](*sys.argv[2:])
