#!/usr/bin/env bash
# `make images`: build the Jobgate image (and, where no registry answers, the
# base images it needs) with docker when a docker engine answers, else podman.
#
#   JOBGATE_IMAGE        the image to build        (default jobgate:latest)
#   JOBGATE_BASE_IMAGE   the Python 3.11 base      (default python:3.11-slim)
#   JOBGATE_REDIS_IMAGE  the Redis compose runs    (default redis:7.2)
#   CONTAINER_ENGINE     docker or podman          (default: detected)
#
# A base that is neither present nor pullable is made from Debian's packages
# with debootstrap (root only), once, and kept: localhost/jobgate-python:bookworm
# (python3, venv) and localhost/jobgate-redis:bookworm (redis-server 7.0).
#
# pip never reaches an index inside the image build: the wheels are made
# beforehand into docker/wheelhouse/ (see below) and the build installs only
# those (`pip install --no-index`). No host certificate ever enters an image.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
IMAGE=${JOBGATE_IMAGE:-jobgate:latest}
BASE=${JOBGATE_BASE_IMAGE:-python:3.11-slim}
REDIS=${JOBGATE_REDIS_IMAGE:-redis:7.2}
LOCAL_BASE=localhost/jobgate-python:bookworm
LOCAL_REDIS=localhost/jobgate-redis:bookworm
DEBIAN_SUITE=bookworm

say() { printf 'images: %s\n' "$*" >&2; }

engine=${CONTAINER_ENGINE:-}
if [ -z "$engine" ]; then
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        engine=docker
    elif command -v podman >/dev/null 2>&1; then
        engine=podman
    else
        say "neither a docker engine that answers nor podman: install one"
        exit 1
    fi
fi
say "engine: $engine"

present() { "$engine" image inspect "$1" >/dev/null 2>&1; }

# debootstrap a minimal Debian with PACKAGES into a rootfs, trim it, import it.
make_local() {
    local tag=$1 packages=$2 prepare=$3 changes=("${@:4}")
    if [ "$(id -u)" != 0 ] || ! command -v debootstrap >/dev/null 2>&1; then
        say "cannot make $tag: needs root and debootstrap (apt-get install debootstrap)"
        exit 1
    fi
    local mirror rootfs
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    rootfs=$(mktemp -d)
    say "making $tag from Debian $DEBIAN_SUITE ($packages), once"
    debootstrap --variant=minbase --include="$packages" "$DEBIAN_SUITE" "$rootfs" "$mirror" >/dev/null
    # What a container never needs: apt's lists and caches, docs, man pages, locales.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/usr/share/locale/*
    "$prepare" "$rootfs"
    local args=()
    for change in "${changes[@]}"; do args+=(--change "$change"); done
    tar -C "$rootfs" -c . | "$engine" import --quiet "${args[@]}" - "$tag" >/dev/null
    rm -rf "$rootfs"
}

# Use IMAGE if present or pullable, else the local Debian-made LOCAL (made once).
resolve() {
    local wanted=$1 local_tag=$2 maker=$3
    if present "$wanted"; then
        echo "$wanted"
        return
    fi
    if [ "$wanted" != "$local_tag" ] && "$engine" pull -q "$wanted" >/dev/null 2>&1; then
        echo "$wanted"
        return
    fi
    if ! present "$local_tag"; then
        [ "$wanted" = "$local_tag" ] || say "cannot pull $wanted: using $local_tag instead"
        "$maker"
    fi
    echo "$local_tag"
}

make_python_base() {
    make_local "$LOCAL_BASE" python3,python3-venv,ca-certificates true \
        'CMD ["python3"]' 'ENV LANG=C.UTF-8'
}

make_redis_base() {
    # Debian's redis-server runs as user redis; /data belongs to it, so a named
    # volume mounted there starts out writable for it.
    make_local "$LOCAL_REDIS" redis-server redis_data_dir \
        'CMD ["redis-server"]' 'USER redis' 'WORKDIR /data' 'EXPOSE 6379' \
        'VOLUME /data' 'ENV LANG=C.UTF-8'
}

redis_data_dir() {
    mkdir -p "$1/data"
    chroot "$1" chown redis:redis /data
}

base=$(resolve "$BASE" "$LOCAL_BASE" make_python_base)
redis=$(resolve "$REDIS" "$LOCAL_REDIS" make_redis_base)

# The wheelhouse, in two parts:
#  - deps/: every dependency, as wheels for the base's own Python (its
#    environment markers, e.g. python_full_version, may differ from the
#    host's), pinned to the versions installed in $PYTHON's environment (those
#    the tests ran with). Built by pip in a throwaway container of the base,
#    with the host's network and, read-only, the host's CA bundle: the only
#    place a host certificate is seen, never a layer. Remade only when the
#    requirements, the pins or the base change.
#  - jobgate-*.whl: Jobgate itself, pure Python, built here on every run.
mkdir -p docker/wheelhouse/deps
work=$(mktemp -d)
"$PYTHON" - "$work/requirements.txt" <<'PY'
import sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
wanted = project["dependencies"] + project["optional-dependencies"]["flower"]
open(sys.argv[1], "w").write("\n".join(wanted) + "\n")
PY
"$PYTHON" -m pip freeze --exclude-editable 2>/dev/null | grep -v -i '^jobgate' >"$work/constraints.txt" || true
base_id=$("$engine" image inspect --format '{{.Id}}' "$base")
stamp=$(cat "$work/requirements.txt" "$work/constraints.txt" <(echo "$base_id") | sha256sum | cut -c1-64)
if [ "$(cat docker/wheelhouse/deps/.stamp 2>/dev/null)" != "$stamp" ]; then
    say "wheelhouse: dependency wheels for $base's Python (pip in a throwaway container)"
    find docker/wheelhouse/deps -name '*.whl' -delete
    cert=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
    cert_args=()
    if [ -f "$cert" ]; then
        cert_args=(-v "$(readlink -f "$cert"):/run/host-ca.crt:ro" -e PIP_CERT=/run/host-ca.crt)
    fi
    "$engine" run --rm --network host "${cert_args[@]}" \
        -e PIP_DISABLE_PIP_VERSION_CHECK=1 \
        -v "$work:/in:ro" -v "$PWD/docker/wheelhouse/deps:/out" "$base" \
        sh -c 'python3 -m venv /tmp/venv && /tmp/venv/bin/pip wheel --quiet --no-cache-dir \
               -r /in/requirements.txt -c /in/constraints.txt --wheel-dir /out'
    echo "$stamp" >docker/wheelhouse/deps/.stamp
else
    say "wheelhouse: dependency wheels up to date"
fi
rm -rf "$work"
find docker/wheelhouse -maxdepth 1 -name 'jobgate-*.whl' -delete
# Fixed timestamps in the wheel: the same code gives the same bytes, so the
# build's cache holds until the code changes.
SOURCE_DATE_EPOCH=315532800 "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir docker/wheelhouse .

start=$(date +%s)
say "building $IMAGE on $base"
build=("$engine" build)
# OCI images (podman's default) have no HEALTHCHECK; keep Docker's format.
[ "$engine" = podman ] && build+=(--format docker)
"${build[@]}" --build-arg "BASE=$base" -f docker/Dockerfile -t "$IMAGE" .
say "built $IMAGE in $(($(date +%s) - start)) s"

say "done. For docker/.env (or the environment of compose):"
[ "$base" = "$BASE" ] || printf 'JOBGATE_BASE_IMAGE=%s\n' "$base"
[ "$redis" = "$REDIS" ] || printf 'JOBGATE_REDIS_IMAGE=%s\n' "$redis"
printf 'JOBGATE_IMAGE=%s\n' "$IMAGE"
