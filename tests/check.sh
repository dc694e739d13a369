#!/usr/bin/env bash
# The one test command: bash tests/check.sh [pytest arguments...]
#
# On a fresh Debian 12 machine, as root, it installs the system packages it needs,
# creates .venv with the project and its dev tools, starts PostgreSQL/TimescaleDB and
# Kafka with tests/services.py (cached in ~/.cache/fleetwatch-dev), then runs ruff, mypy
# and pytest. Servers that this run started are stopped at the end; servers that were
# already running are left alone. With CI=true a test that lacks a service fails
# instead of being skipped. Every step runs even when an earlier one failed; the exit
# status is non-zero when any did, including a pytest run that collected no tests.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export CI="${CI:-}"
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1

PG_MAJOR=15
PYTEST_TIMEOUT_S="${PYTEST_TIMEOUT_S:-3600}"
failed=()

section() { printf '\n======== %s ========\n' "$*"; }
die() {
    printf 'check.sh: %s\n' "$*" >&2
    exit 1
}
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
version_of() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }

apt_updated=""
apt_install() {
    [[ $(id -u) -eq 0 ]] || die "need root to install: $*"
    if [[ -z $apt_updated ]]; then
        apt-get update -q || die "apt-get update failed"
        apt_updated=1
    fi
    apt-get install -y -q --no-install-recommends "$@"
}

# ---------------------------------------------------------------------------- system
section "system packages"
if command -v apt-get >/dev/null; then
    wanted=(ca-certificates debian-archive-keyring "postgresql-$PG_MAJOR" cmake make gcc libc6-dev
        dpkg-dev acl docker-compose tmux)
    command -v java >/dev/null || wanted+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null || wanted+=(maven)
    command -v python3 >/dev/null || wanted+=(python3)
    [[ -x .venv/bin/python ]] || python3 -c 'import ensurepip, venv' 2>/dev/null || wanted+=(python3-venv)
    missing=()
    for pkg in "${wanted[@]}"; do installed "$pkg" || missing+=("$pkg"); done
    if ((${#missing[@]})); then
        echo "installing: ${missing[*]}"
        apt_install "${missing[@]}" || die "apt-get install ${missing[*]} failed"
    fi
    # The extension is compiled against the server's headers: same version as the server.
    server="$(version_of "postgresql-$PG_MAJOR")"
    if [[ $(version_of "postgresql-server-dev-$PG_MAJOR") != "$server" ]]; then
        echo "installing postgresql-server-dev-$PG_MAJOR=$server"
        apt_install "postgresql-server-dev-$PG_MAJOR=$server" ||
            apt_install "postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR" ||
            die "cannot install postgresql-server-dev-$PG_MAJOR matching postgresql-$PG_MAJOR"
    fi
    echo "postgresql-$PG_MAJOR $(version_of "postgresql-$PG_MAJOR"), server-dev $(version_of "postgresql-server-dev-$PG_MAJOR")"
else
    echo "no apt-get: assuming PostgreSQL $PG_MAJOR (+ server headers), cmake, a C compiler, Java 17 and Maven are installed"
fi

# ---------------------------------------------------------------------------- python
section "python environment (.venv)"
if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv || die "python3 -m venv .venv failed"
fi
.venv/bin/python -m pip install -q -e '.[dev]' || die "pip install -e '.[dev]' failed"
.venv/bin/python --version

# ---------------------------------------------------------------------------- services
section "services (PostgreSQL $PG_MAJOR + TimescaleDB, Kafka)"
started_here=""
stop_services() {
    if [[ -n $started_here ]]; then
        section "stopping the services this run started"
        .venv/bin/python tests/services.py down
    fi
}
trap stop_services EXIT
if [[ -n ${FLEETWATCH_TEST_DSN:-} && -n ${FLEETWATCH_TEST_KAFKA:-} ]]; then
    echo "using FLEETWATCH_TEST_DSN and FLEETWATCH_TEST_KAFKA from the environment"
else
    .venv/bin/python tests/services.py status >/dev/null || started_here=1
    started=$SECONDS
    .venv/bin/python tests/services.py up || die "the test services did not come up"
    echo "services ready in $((SECONDS - started)) s"
    while IFS= read -r line; do export "${line?}"; done < <(.venv/bin/python tests/services.py env)
fi
echo "FLEETWATCH_TEST_DSN=$FLEETWATCH_TEST_DSN"
echo "FLEETWATCH_TEST_KAFKA=$FLEETWATCH_TEST_KAFKA"

# ---------------------------------------------------------------------------- checks
step() {
    local name=$1
    shift
    section "$name"
    "$@"
    local rc=$?
    if ((rc != 0)); then
        failed+=("$name (exit $rc)")
    fi
    return 0
}

step "ruff check" .venv/bin/ruff check .
step "ruff format --check" .venv/bin/ruff format --check .
step "mypy" .venv/bin/mypy

section "pytest"
timeout --signal=INT --kill-after=60 "$PYTEST_TIMEOUT_S" \
    .venv/bin/python -m pytest "$@"
rc=$?
case $rc in
    0) ;;
    5) failed+=("pytest (no tests collected)") ;;
    124) failed+=("pytest (stopped after $PYTEST_TIMEOUT_S s)") ;;
    *) failed+=("pytest (exit $rc)") ;;
esac

section "summary"
if ((${#failed[@]})); then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "all checks passed"
