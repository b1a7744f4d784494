#!/usr/bin/env bash
# Build our vision_msgs subset (rba_core/ros_msgs/vision_msgs/msg, the 4.x definitions) into a venv.
#
#   bash scripts/build_vision_msgs.sh VENV
#
# vision_msgs is not on PyPI. This generates a small ament_cmake interface package in
# build/vision_msgs (package.xml + CMakeLists.txt from ros_interfaces/vision_msgs, the .msg files
# from rba_core), repoints the Jazzy wheels' CMake exports at this venv's Python/numpy headers, and
# configures, builds and installs it into the venv prefix with cmake (≈ 1 min on 2 cores).
# Idempotent: skipped when the installed package was built from the same sources.
# Robots use the real ros-<distro>-vision-msgs instead (ros_interfaces/ has a COLCON_IGNORE).
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 VENV" >&2
  exit 2
fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(cd "$1" && pwd)"
PY="$VENV/bin/python"
TEMPLATE="$REPO/ros_interfaces/vision_msgs"
MSGS="$REPO/rba_core/ros_msgs/vision_msgs/msg"
SRC="$REPO/build/vision_msgs/src"
BUILD="$REPO/build/vision_msgs/build"
STAMP="$VENV/share/vision_msgs/rba_sources.sha256"

[[ -x "$PY" ]] || { echo "error: $PY not found (create the venv first)" >&2; exit 1; }
command -v cmake >/dev/null || { echo "error: cmake not found (apt-get install cmake g++)" >&2; exit 1; }
[[ -d "$VENV/share/rosidl_default_generators" ]] || {
  echo "error: rosidl_default_generators is not in $VENV (pip install -e '.[ros,ros-build]')" >&2
  exit 1; }

# Everything that defines the package: its digest decides whether to rebuild.
DIGEST="$(cat "$TEMPLATE/package.xml" "$TEMPLATE/CMakeLists.txt" "$MSGS"/*.msg | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$DIGEST" ]] \
   && "$PY" -c "import vision_msgs.msg" 2>/dev/null; then
  echo "vision_msgs already installed in $VENV (up to date)"
  exit 0
fi

# 1. The wheels' CMake exports point at the interpreter of the machine that built them.
PY_INC="$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")"
NP_INC="$("$PY" -c "import numpy; print(numpy.get_include())")"
grep -rl /opt/python/cp311-cp311 "$VENV/share" --include='*.cmake' | xargs -r sed -i \
  -e "s#/opt/python/cp311-cp311/include/python3.11#$PY_INC#g" \
  -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NP_INC#g"

# 2. The package sources: template + the single copy of the definitions.
rm -rf "$SRC"
mkdir -p "$SRC/msg"
cp "$TEMPLATE/package.xml" "$TEMPLATE/CMakeLists.txt" "$SRC/"
cp "$MSGS"/*.msg "$SRC/msg/"

# 3. Configure, build, install into the venv prefix (no colcon, no sourcing).
echo "building vision_msgs into $VENV (about a minute)"
export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" AMENT_PREFIX_PATH="$VENV"
cmake -S "$SRC" -B "$BUILD" -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_PREFIX_PATH="$VENV" \
  -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$PY" -DCMAKE_BUILD_TYPE=Release >"$BUILD.log" 2>&1 \
  || { tail -40 "$BUILD.log" >&2; echo "error: cmake configure failed (log: $BUILD.log)" >&2; exit 1; }
{ cmake --build "$BUILD" -j"$(nproc)" && cmake --install "$BUILD"; } >>"$BUILD.log" 2>&1 \
  || { tail -40 "$BUILD.log" >&2; echo "error: build failed (log: $BUILD.log)" >&2; exit 1; }

"$PY" -c "from vision_msgs.msg import Detection2DArray, LabelInfo" \
  || { echo "error: vision_msgs built but does not import" >&2; exit 1; }
echo "$DIGEST" >"$STAMP"
echo "vision_msgs installed in $VENV"
