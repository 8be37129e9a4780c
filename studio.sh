#!/usr/bin/env bash
# One entry point for people and CI.
#   ./studio.sh app    set up (venv, pinned deps, datasets) and start the app
#   ./studio.sh test   set up (the same, plus Debian chromium) and run ruff and the whole test suite
#   ./studio.sh test fast         ruff and the fast tier (no browser, load, distributed or slow tests)
#   ./studio.sh screenshots       refresh the README's screenshots in docs/screenshots/ (a real browser)
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
PY="$VENV/bin/python"

say() { printf '\n==> %s\n' "$*"; }

setup() {
  local requirements=$1
  if [ ! -x "$PY" ]; then
    say "creating $VENV (python3 -m venv)"
    python3 -m venv "$VENV"
  fi
  local stamp="$VENV/.installed-$(sha256sum "$requirements" requirements.txt | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    say "installing pinned packages from $requirements"
    "$PY" -m pip install --disable-pip-version-check -q -r "$requirements"
    touch "$stamp"
  fi
  say "datasets (offline sources, sha256-checked; instant once cached)"
  "$PY" -m mnist_models fetch-data --dataset all
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_test_tools() {
  # chromium for the real-browser tests; the fonts print the digits of the photo test set (tests/test_photos.py);
  # nginx puts two replicas behind one address (tests/test_replicas.py); postgresql runs the class store's tests on
  # a real server (tests/test_classroom.py)
  if [ ! -x /usr/bin/chromium ] || [ ! -d /usr/share/fonts/truetype/dejavu ] \
      || [ ! -d /usr/share/fonts/truetype/liberation ] || [ ! -x /usr/sbin/nginx ] \
      || ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    say "installing Debian chromium, fonts, nginx and postgresql for the real-browser, photo, replica and class tests"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core fonts-liberation \
      nginx-light postgresql >/dev/null
  fi
}

case "${1:-}" in
  app)
    setup requirements.txt
    say "starting the studio on http://localhost:${PORT:-8501}"
    exec "$PY" -m streamlit run app.py --server.port "${PORT:-8501}"
    ;;
  test)
    setup requirements-dev.txt
    ensure_test_tools
    say "ruff"
    "$VENV/bin/ruff" check .
    # two workers, one a core: much of a test's time is one thread (tracing, a browser waiting on a rerun, a
    # process starting TensorFlow); the browser tests stay on one worker, sharing one app server and one browser
    parallel=(-n 2 --dist loadgroup)
    if [ "${2:-}" = fast ]; then
      say "pytest: the fast tier"
      exec "$PY" -m pytest "${parallel[@]}" \
        -m "not browser and not slow and not distributed and not load and not screenshots" "${@:3}"
    fi
    say "pytest"
    exec "$PY" -m pytest "${parallel[@]}" "${@:2}"
    ;;
  screenshots)
    setup requirements-dev.txt
    ensure_test_tools
    say "the README's screenshots, from the real app in a real browser"
    STUDIO_SCREENSHOTS=1 exec "$PY" -m pytest -m screenshots tests/e2e/test_screenshots.py "${@:2}"
    ;;
  *)
    echo "usage: $0 app | test [fast] [pytest args] | screenshots" >&2
    exit 2
    ;;
esac
