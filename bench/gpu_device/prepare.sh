#!/usr/bin/env bash
# Build what bench/gpu_scaleout.py needs on the offline GPU machine beside the vLLM bundle
# (../shared/tools/vllm-device/). Run here, from the repo root (needs pip access to PyPI and apt):
#   bash bench/gpu_device/prepare.sh
# Makes the git-ignored .scaleout-carry/ (about 5 MiB; carry it in the run call):
#   site.tar.xz   docground's Python dependencies the GPU image lacks, as cp312 wheels installed with
#                 --target: celery (kombu, billiard, vine, amqp, click-*, prompt_toolkit, wcwidth, tzlocal,
#                 tzdata), redis, SQLAlchemy, pydantic-settings, python-dotenv, filetype, snowballstemmer and
#                 opencc (retrieval's sparse vectors, which the CPU worker computes). The vLLM bundle
#                 brings pydantic; pymupdf stays behind (the benchmark feeds TIFF scans, and
#                 docground_testing/module_standins.py stubs the import).
#   redis/        Debian's redis-server and redis-tools (apt-get download + dpkg -x), with the libraries the
#                 GPU image may lack (liblzf1, libjemalloc2, libatomic1)
#   redis-server  runs that redis-server with those libraries (bench/gpu_device/run_scaleout.sh points
#                 REDIS_SERVER at it)
# Works from any folder and from a copy of the checkout without .git (the repo root is found from this
# script's own path; the git exclude entry is only added where there is a git directory).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
C=${CARRY:-.scaleout-carry}
PY=${PY:-.venv/bin/python}
# this checkout's own git directory, if any (not that of a repository the copy happens to sit in)
GIT_DIR_FOUND=""
if [ "$(git rev-parse --show-toplevel 2>/dev/null || true)" = "$(pwd -P)" ]; then
  GIT_DIR_FOUND=$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null \
                  || git rev-parse --git-common-dir 2>/dev/null || true)
fi
if [ "$C" = .scaleout-carry ] && [ -n "$GIT_DIR_FOUND" ] && [ -d "$GIT_DIR_FOUND" ]; then
  mkdir -p "$GIT_DIR_FOUND/info"
  grep -qxF "/$C/" "$GIT_DIR_FOUND/info/exclude" 2>/dev/null || echo "/$C/" >> "$GIT_DIR_FOUND/info/exclude"
fi
rm -rf "$C" && mkdir -p "$C/dl" "$C/debs" "$C/build/site"

# The versions of this checkout's .venv (tested together here).
WHEELS=(amqp==5.4.2 billiard==4.3.2 celery==5.7.0 click-didyoumean==0.3.1 click-plugins==1.1.1.2
        click-repl==0.4.1 filetype==1.2.0 kombu==5.7.0 prompt_toolkit==3.0.53 pydantic-settings==2.16.3
        python-dotenv==1.2.4 redis==8.1.0 SQLAlchemy==2.1.9 tzlocal==5.4.5 vine==5.1.0 wcwidth==0.9.4
        tzdata==2026.6 snowballstemmer==3.1.1 opencc==1.4.2)
PYVER=${PYVER:-3.12}  # the GPU image's Python
PLAT=(--only-binary=:all: --python-version "$PYVER" --implementation cp --abi "cp${PYVER/./}" --abi abi3 --abi none
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
      --platform any)
"$PY" -m pip download -q --no-deps "${PLAT[@]}" -d "$C/dl" "${WHEELS[@]}"
"$PY" -m pip install -q --no-deps --no-compile "${PLAT[@]}" --target "$C/build/site" "$C"/dl/*.whl
rm -rf "$C/build/site/bin"
tar -C "$C/build/site" -cf - . | xz -9 > "$C/site.tar.xz"

# redis-server: Debian's build, extracted, not installed (dpkg -x into a folder).
(cd "$C/debs" && apt-get download redis-server redis-tools liblzf1 libjemalloc2 libatomic1 2>/dev/null)
for deb in "$C"/debs/*.deb; do dpkg -x "$deb" "$C/redis"; done
rm -rf "$C/redis/usr/share" "$C/redis/etc" "$C/redis/lib/systemd" "$C/redis/usr/lib/tmpfiles.d"
cat > "$C/redis-server" <<'WRAP'
#!/bin/sh
# Debian's redis-server with the libraries carried beside it. The binary is redis-check-rdb behind a
# symlink named redis-server, and it acts by the name it is called by, so the symlink is what runs.
here=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH="$here/redis/usr/lib/x86_64-linux-gnu:$here/redis/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$here/redis/usr/bin/redis-server" "$@"
WRAP
chmod +x "$C/redis-server"
"$C/redis-server" --version
rm -rf "$C/dl" "$C/debs" "$C/build"
du -sh "$C" "$C"/*
