"""Two studio replicas behind nginx with docs/nginx-replicas.conf: each visitor's requests and websocket stay on
one replica (its session lives in that process), and different visitors spread over both. The replicas differ in
one client setting (the toolbar mode) that every new session receives, so a visitor can tell which one it met."""

import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from mnist_models import loadtest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MODES = ("viewer", "minimal")  # the toolbar modes that tell the two replicas apart


def wait_until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    if not Path(NGINX).exists():
        pytest.fail("nginx is missing: install Debian's nginx-light (./studio.sh test does)")
    folder = tmp_path_factory.mktemp("nginx")
    ports = [loadtest.free_port() for _ in range(3)]
    replicas = [loadtest.start_app(port, folder / f"replica-{port}.log", options=("--client.toolbarMode", mode))
                for port, mode in zip(ports[1:], MODES, strict=True)]
    config = (ROOT / "docs" / "nginx-replicas.conf").read_text()
    config = config.replace("127.0.0.1:8501", f"127.0.0.1:{ports[0]}")
    config = config.replace("127.0.0.1:8601", f"127.0.0.1:{ports[1]}").replace("127.0.0.1:8602",
                                                                               f"127.0.0.1:{ports[2]}")
    (folder / "nginx.conf").write_text(config)
    nginx = subprocess.Popen([NGINX, "-c", str(folder / "nginx.conf"), "-p", str(folder), "-g", "daemon off;"],
                             stderr=subprocess.STDOUT, stdout=(folder / "nginx.out").open("w"))
    url = f"http://127.0.0.1:{ports[0]}"
    wait_until(lambda: nginx.poll() is not None or _answers(url))
    assert nginx.poll() is None, (folder / "nginx.out").read_text() + (folder / "error.log").read_text()
    yield url
    nginx.terminate()
    for replica in replicas:
        replica.terminate()
    for process in (nginx, *replicas):
        process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok"
    except OSError:
        return False


def route_cookie(url: str) -> str:
    """What a browser keeps from its first visit: the proxy's route cookie."""
    with urllib.request.urlopen(url + "/", timeout=30) as response:
        cookie = response.headers["Set-Cookie"]
    assert cookie and cookie.startswith("studio_route="), cookie
    return cookie.split(";")[0]


def replica_of(url: str, cookie: str) -> str:
    """Open a visitor's websocket through the proxy; the replica it reached, by the toolbar mode it was given."""
    async def visit() -> str:
        visitor = loadtest.Visitor(url, cookie)
        await visitor.open()
        await visitor.close()
        return MODES[visitor.server_config.toolbar_mode - 2] if visitor.server_config.toolbar_mode >= 2 else "?"
    return loadtest.run_beside(visit())


def test_each_visitor_stays_on_one_replica_and_visitors_spread(proxy):
    cookies = [route_cookie(proxy) for _ in range(8)]
    homes = {}
    for cookie in cookies:
        visits = {replica_of(proxy, cookie) for _ in range(3)}
        assert len(visits) == 1, f"{cookie} moved between replicas: {visits}"
        homes[cookie] = visits.pop()
    assert set(homes.values()) == set(MODES), homes  # 8 visitors all on one replica: 1 chance in 128
