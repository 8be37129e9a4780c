"""A local multi-worker cluster for `--strategy multiworker`: TF_CONFIG for each worker and its process. Used by the
throughput benchmark and the tests; on real machines, set TF_CONFIG yourself (see the README)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    """The standard TF_CONFIG of worker `index` in a cluster of workers on 127.0.0.1 (worker 0 is the chief)."""
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def start_worker(ports: list[int], index: int, train_args: list[str], log: Path,
                 threads: int | None = None) -> subprocess.Popen:
    """`python -m mnist_models train … --strategy multiworker` as worker `index`, logging to `log`."""
    env = {**os.environ, "TF_CONFIG": tf_config(ports, index), "PYTHONUNBUFFERED": "1"}
    if threads:
        env.update(TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(threads),
                   OMP_NUM_THREADS=str(threads))
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "mnist_models", "train", *train_args,
                                 "--strategy", "multiworker"], stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=Path(__file__).resolve().parent.parent)
