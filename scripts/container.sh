#!/usr/bin/env bash
# Build the Dockerfile with podman and prove the container serves, offline (`make container`).
#
# For a machine with no Docker engine and no registry (this one): Debian's podman + runc,
# a base image tagged python:3.11-slim-bookworm built locally with debootstrap, and every
# wheel from a local wheelhouse passed in the build context. Then: run the image on
# loopback, wait for /readyz, ask one Chinese and one English question, print the answers,
# the image size and the start-to-ready time, and stop the container whatever happens.
#
# Idempotent: a rerun reuses the base image, the wheelhouse and podman's layer cache.
#
# Usage: bash scripts/container.sh [--build-only]
# Environment: IMAGE (policy-qa:local), PORT (8765), READY_TIMEOUT (300 s),
#              DEBIAN_MIRROR (http://deb.debian.org/debian),
#              STORAGE_DRIVER (auto: overlay if this kernel mounts it, else vfs).
# Needs root: apt-get, debootstrap and podman's storage under /var/lib/containers.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-policy-qa:local}
BASE_IMAGE=python:3.11-slim-bookworm
PORT=${PORT:-8765}
READY_TIMEOUT=${READY_TIMEOUT:-300}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
STORAGE_DRIVER=${STORAGE_DRIVER:-auto}
NAME=policy-qa-smoke
WORK=var/container
WHEELHOUSE=$WORK/wheelhouse
BUILD_ONLY=0
[[ ${1:-} == --build-only ]] && BUILD_ONLY=1

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'container.sh: %s\n' "$*" >&2; exit 1; }

# --- tools ----------------------------------------------------------------------------
step "tools: podman, runc, debootstrap"
[[ $(id -u) == 0 ]] || die "run as root: debootstrap and podman's storage need it"
missing=()
for tool in podman:podman runc:runc debootstrap:debootstrap newuidmap:uidmap \
    slirp4netns:slirp4netns fuse-overlayfs:fuse-overlayfs; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if ((${#missing[@]})); then
    echo "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" ca-certificates conmon containernetworking-plugins catatonit >/dev/null
fi

mkdir -p "$WORK"
# The sandbox cannot raise rlimits: no default ulimits for containers.
cat >"$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = []
EOF
export CONTAINERS_CONF=$PWD/$WORK/containers.conf

# Storage: overlay where this kernel allows an overlay mount (layers are deltas), else vfs
# (every layer a full copy of the file system: a build then needs 25+ GB and much longer).
# Each driver has its own storage root, so switching never trips over the other's.
if [[ $STORAGE_DRIVER == auto ]]; then
    STORAGE_DRIVER=vfs
    mkdir -p /var/lib/containers
    probe=$(mktemp -d /var/lib/containers/.overlay-probe.XXXXXX)
    mkdir -p "$probe"/{lower,upper,work,merged}
    if mount -t overlay overlay \
        -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
        "$probe/merged" 2>/dev/null; then
        umount "$probe/merged"
        STORAGE_DRIVER=overlay
    fi
    rm -rf "$probe"
fi
STORE=/var/lib/containers/policy-qa-$STORAGE_DRIVER
RUNROOT=/run/containers/policy-qa-$STORAGE_DRIVER
pm() {
    podman --root "$STORE" --runroot "$RUNROOT" --storage-driver "$STORAGE_DRIVER" \
        --runtime runc "$@"
}
echo "$(podman --version); storage: $STORAGE_DRIVER in $STORE"

# --- base image -----------------------------------------------------------------------
# The official python:3.11-slim-bookworm has python at /usr/local/bin; this one has
# Debian's python3.11 at /usr/bin. The Dockerfile uses `python3 -m venv`, fine for both.
step "base image $BASE_IMAGE"
if pm image exists "$BASE_IMAGE"; then
    echo "cached"
else
    tarball=$WORK/base-bookworm.tar
    if [[ ! -s $tarball ]]; then
        rootfs=$WORK/rootfs
        rm -rf "$rootfs"
        echo "debootstrap bookworm from $DEBIAN_MIRROR (about a minute)"
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            bookworm "$rootfs" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1 \
            || { tail -20 "$WORK/debootstrap.log"; die "debootstrap failed"; }
        # Slim it like the official -slim images: no apt lists, caches, docs, man pages.
        rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* \
            "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
        tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
    fi
    pm import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
        "$tarball" "$BASE_IMAGE" >/dev/null
    echo "imported $(pm image inspect --format '{{.Id}}' "$BASE_IMAGE" | cut -c1-12)"
fi

# --- wheelhouse -----------------------------------------------------------------------
# Exactly the pinned dependencies of pyproject.toml (and theirs), as wheels for this
# Python; the torch==2.13.0 CPU wheel comes from this machine's pip find-links.
step "wheelhouse $WHEELHOUSE"
host_python=python3
[[ -x .venv/bin/python ]] && host_python=.venv/bin/python
"$host_python" - >"$WORK/requirements.txt" <<'EOF'
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
EOF
wheelhouse_summary() {
    echo "$(find "$WHEELHOUSE" -name '*.whl' | wc -l) wheels, $(du -sh "$WHEELHOUSE" | cut -f1)"
}
stamp=$WHEELHOUSE/.complete-$(sha1sum <"$WORK/requirements.txt" | cut -c1-12)
if [[ -e $stamp ]]; then
    echo "cached ($(wheelhouse_summary))"
else
    rm -rf "$WHEELHOUSE"
    mkdir -p "$WHEELHOUSE"
    # pip wheel: downloads wheels and builds the sdist-only ones (jieba) into wheels, so
    # the image build needs neither network nor build tools.
    # (This machine's pip config names index folders that do not exist: mute that noise.)
    pip_wheel() {
        "$host_python" -m pip wheel --quiet --wheel-dir "$WHEELHOUSE" "$@" 2>&1 \
            | { grep -v "^WARNING: Location 'file:" || true; }
    }
    pip_wheel "$(grep -E '^torch==' "$WORK/requirements.txt")"
    pip_wheel -r "$WORK/requirements.txt"
    python3 - "$WHEELHOUSE" <<'EOF'
import pathlib, sys, zipfile
for wheel in pathlib.Path(sys.argv[1]).glob("torch-*.whl"):
    names = zipfile.ZipFile(wheel).namelist()
    assert not any("libcudart" in n or "nvidia" in n for n in names), f"{wheel.name} is a CUDA build"
    print("torch:", wheel.name)
EOF
    touch "$stamp"
    wheelhouse_summary
fi

# --- image ----------------------------------------------------------------------------
step "image $IMAGE (podman build, no network)"
[[ -f service/app.py ]] || echo "warning: service/app.py does not exist yet; the image will not serve"
build_start=$SECONDS
# --format docker keeps HEALTHCHECK (the OCI format has no such field). The earlier
# build stages are tagged too, so pruning the dangling images of earlier builds (GBs each)
# keeps exactly the layers a rerun reuses.
for target in requirements deps build runtime; do
    tag=$IMAGE-stage-$target
    [[ $target == runtime ]] && tag=$IMAGE
    pm build --format docker --network none --pull=never \
        --build-arg WHEELHOUSE="$WHEELHOUSE" \
        --target "$target" -f Dockerfile -t "$tag" .
done
echo "built in $((SECONDS - build_start)) s"
pm image prune --force >/dev/null
size_bytes=$(pm image inspect --format '{{.Size}}' "$IMAGE")
size_mb=$((size_bytes / 1000 / 1000))
echo "image size: ${size_mb} MB"

((BUILD_ONLY)) && exit 0

# --- run ------------------------------------------------------------------------------
step "run on 127.0.0.1:$PORT"
python3 - "$PORT" <<'EOF' || die "port $PORT is in use; set PORT=..."
import socket, sys
with socket.socket() as s:
    s.bind(("127.0.0.1", int(sys.argv[1])))
EOF
stop_container() {
    # Detached, so nothing else holds it; `podman stop` is what ends it.
    if pm container exists "$NAME" 2>/dev/null; then
        pm stop --time 10 "$NAME" >/dev/null 2>&1 || true
        pm rm --force "$NAME" >/dev/null 2>&1 || true
        echo "container stopped"
    fi
}
stop_container  # a leftover from an interrupted run
trap stop_container EXIT
trap 'exit 130' INT TERM

run_start=$EPOCHREALTIME
# podman schedules HEALTHCHECKs with systemd timers; without systemd it logs errors about
# that and runs the container anyway (the check is run by hand below): keep them quiet.
pm run --detach --name "$NAME" --network host \
    -e POLICY_QA_HOST=127.0.0.1 -e POLICY_QA_PORT="$PORT" \
    "$IMAGE" >/dev/null 2>"$WORK/podman-run.err" \
    || { cat "$WORK/podman-run.err" >&2; die "podman run failed"; }

ready() {
    python3 -c 'import sys, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=2)
except OSError:
    sys.exit(1)' "$PORT"
}
deadline=$((SECONDS + READY_TIMEOUT))
until ready; do
    if [[ $(pm container inspect --format '{{.State.Running}}' "$NAME") != true ]]; then
        pm logs --tail 40 "$NAME" >&2 || true
        die "the container exited before it was ready"
    fi
    if ((SECONDS >= deadline)); then
        pm logs --tail 40 "$NAME" >&2 || true
        die "not ready after $READY_TIMEOUT s"
    fi
    sleep 0.2
done
ready_s=$(awk -v a="$run_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
echo "ready: start-to-ready ${ready_s} s"

step "ask"
python3 - "$PORT" <<'EOF'
import json, sys, urllib.request
port = sys.argv[1]
for question in ("北京独角兽企业有多少家？", "How many unicorn companies does Beijing have?"):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/ask",
        data=json.dumps({"question": question, "top_k": 3}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.load(response)
    print(f"\nQ: {question}\nA: {body['answer']['text']}")
    for rank, passage in enumerate(body.get("passages", []), start=1):
        text = " ".join(passage["text"].split())
        print(f"   [{rank}] {text[:160]}{'…' if len(text) > 160 else ''}")
EOF

step "summary"
# podman runs HEALTHCHECKs from systemd timers, absent here: run the image's check once.
health=unhealthy
pm healthcheck run "$NAME" >/dev/null 2>&1 && health=healthy
echo "image $IMAGE: ${size_mb} MB; start-to-ready ${ready_s} s; HEALTHCHECK: $health"
