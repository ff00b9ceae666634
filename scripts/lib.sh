# Shared by scripts/demo and scripts/check: install what is missing, build.
# Sourced, not run.

ROLLUPD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Everything the scripts, the build and the tests run: to build from git
# (compiler, autotools, pkg-config, the -dev packages), to test (Check,
# PostgreSQL's server and client tools, curl for the metrics tests, runuser
# and pkill, Prometheus and promtool for the Prometheus tests, jq for the
# Grafana dashboard's check), and for make lint / make format-check
# (cppcheck, clang-tidy, clang-format).
ROLLUPD_PACKAGES="build-essential autoconf automake pkg-config libpq-dev libev-dev libconfig-dev check postgresql postgresql-client util-linux procps curl prometheus jq"
ROLLUPD_LINT_PACKAGES="cppcheck clang-tidy clang-format"

log() { printf '==> %s\n' "$*"; }

ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; return 1; }
        sudo="sudo"
    fi
    $sudo apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

build_rollupd() {
    cd "$ROLLUPD_ROOT"
    if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
        log "autoreconf"
        autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
    fi
    if [ ! -f Makefile ] || [ configure -nt Makefile ]; then
        log "configure"
        ./configure -q
    fi
    log "make"
    make -s -j"$(nproc)" >/dev/null
}
