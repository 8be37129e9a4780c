"""A throwaway PostgreSQL server from Debian's postgresql package, for the class store's tests (as nginx is for
the replica tests): its own data folder and port, gone when the tests end."""

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from mnist_models import loadtest


def _binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("Debian's postgresql is missing: install it (./studio.sh test does)")
    return Path(found[-1]).parent


@contextlib.contextmanager
def server():
    """Yields a postgresql:// URL of a fresh cluster in a folder of /tmp (pytest's own is closed to other users).
    PostgreSQL refuses to run as root: as root, the cluster runs as the package's `postgres` user."""
    bin_dir, port = _binaries(), loadtest.free_port()
    folder = Path(tempfile.mkdtemp(prefix="studio-postgres-"))
    data, log = folder / "data", folder / "postgres.log"
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        shutil.chown(folder, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", "studio", "--auth=trust", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True, timeout=120)
    process = subprocess.Popen([*prefix, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-h",
                                "127.0.0.1", "-k", str(folder), "-c", "fsync=off"],
                               stdout=subprocess.DEVNULL, stderr=log.open("w"))
    url = f"postgresql://studio@127.0.0.1:{port}/postgres"
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start: {log.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
