#!/usr/bin/env bash
# Prepare an aarch64 Python 3.11 + PyPI torch 2.9.1 (CPU) environment that runs on an x86-64 host under
# qemu-user-static, to prove that `latlab lut build` (torch path) runs on ARM without a board.
#
#   scripts/setup_arm_emulation.sh [CACHE_DIR]      (default: ${LATLAB_ARM_CACHE:-$HOME/.cache/latlab-arm64})
#
# Steps (each skipped when its result is already in the cache):
#   1. qemu-aarch64-static from Debian's qemu-user-static (apt-get, needs root once);
#   2. arm64 .debs of Debian's python3.11 and the libraries it links, downloaded with a private apt
#      configuration (APT::Architecture=arm64; the host's dpkg architectures are left untouched) and
#      unpacked with `dpkg-deb -x` into CACHE/rootfs (used as qemu's -L sysroot);
#   3. PyPI's manylinux aarch64 wheels (torch 2.9.1 CPU and the pure-Python / aarch64 packages latlab's
#      table builder imports) fetched with `pip download --platform ... --no-deps` and installed with
#      `pip install --target CACHE/site`.
# Prints the variables to use and writes them to CACHE/env.sh:
#   "$QEMU" -L "$ROOTFS" "$ROOTFS/usr/bin/python3.11"  with PYTHONPATH="$SITE:<repo>"
# Only package registries are contacted (deb.debian.org through apt, PyPI through pip). About 1 GB of cache.
set -euo pipefail

CACHE="${1:-${LATLAB_ARM_CACHE:-$HOME/.cache/latlab-arm64}}"
PIP="${PIP:-python3 -m pip}"
TORCH_VERSION="${TORCH_VERSION:-2.9.1}"
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"

# 1. qemu
QEMU="$(command -v qemu-aarch64-static || true)"
if [ -z "$QEMU" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static >/dev/null
    QEMU="$(command -v qemu-aarch64-static)"
  else
    echo "error: qemu-aarch64-static not found; install Debian's qemu-user-static (as root: apt-get install qemu-user-static)" >&2
    exit 1
  fi
fi

# 2. arm64 python3.11 sysroot
ROOTFS="$CACHE/rootfs"
if [ ! -x "$ROOTFS/usr/bin/python3.11" ]; then
  APT_DIR="$CACHE/apt"
  mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/archives/partial" "$CACHE/debs"
  touch "$APT_DIR/status"
  cat > "$APT_DIR/apt.conf" <<CONF
APT::Architecture "arm64";
APT::Architectures "arm64";
Dir::State::Lists "$APT_DIR/lists";
Dir::State::status "$APT_DIR/status";
Dir::Cache "$APT_DIR";
CONF
  export APT_CONFIG="$APT_DIR/apt.conf"
  apt-get update -qq >/dev/null
  (cd "$CACHE/debs" && apt-get download -qq \
      python3.11 python3.11-minimal libpython3.11-minimal libpython3.11-stdlib media-types \
      libc6 libgcc-s1 libstdc++6 libgomp1 gcc-12-base zlib1g libexpat1 libffi8 libbz2-1.0 liblzma5 libzstd1 \
      libssl3 libsqlite3-0 libncursesw6 libtinfo6 libreadline8 libuuid1 libdb5.3 libgdbm6 libcrypt1 libnsl2 \
      libtirpc3 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libkeyutils1 libcom-err2 2>&1 \
      | grep -v "unsandboxed" || true)
  unset APT_CONFIG
  mkdir -p "$ROOTFS"
  for deb in "$CACHE"/debs/*.deb; do dpkg-deb -x "$deb" "$ROOTFS"; done
fi

# 3. aarch64 wheels
SITE="$CACHE/site"
if [ ! -f "$SITE/.complete" ]; then
  mkdir -p "$CACHE/wheels"
  PLAT=(--platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux_2_27_aarch64
        --platform manylinux_2_28_aarch64 --python-version 3.11 --implementation cp --only-binary=:all:)
  # --no-deps: pip would evaluate torch's dependency markers for the host (x86-64 CUDA wheels).
  $PIP download -q --disable-pip-version-check --no-deps --dest "$CACHE/wheels" "${PLAT[@]}" \
      "torch==$TORCH_VERSION" numpy scipy pandas psutil pyyaml rich markdown-it-py mdurl pygments filelock \
      typing-extensions sympy mpmath networkx jinja2 markupsafe fsspec python-dateutil six tzdata 2>&1 \
      | grep -v "is ignored" || true
  $PIP install -q --disable-pip-version-check --no-deps --no-index --target "$SITE" "${PLAT[@]}" \
      "$CACHE"/wheels/*.whl 2>&1 | grep -v "is ignored" || true
  touch "$SITE/.complete"
fi

cat > "$CACHE/env.sh" <<ENV
QEMU="$QEMU"
ROOTFS="$ROOTFS"
SITE="$SITE"
ENV
"$QEMU" -L "$ROOTFS" "$ROOTFS/usr/bin/python3.11" -c \
  "import sys, platform; sys.path.insert(0, '$SITE'); import torch; print('aarch64 check:', platform.machine(), 'torch', torch.__version__)"
cat "$CACHE/env.sh"
