#!/bin/sh
# Installs the build into a scratch prefix and builds a consumer two ways, as a user would:
# CMake's find_package(flashport) and pkg-config. Both consumers run a small forward on the CPU.
set -eu
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S "$src/tests/install/consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/consumer/consumer"
libdir=$(ls -d "$tmp"/prefix/lib*/pkgconfig | head -n 1)
PKG_CONFIG_PATH="$libdir" cc -std=c11 -Wall -Wextra -Werror "$src/tests/install/consumer/consumer.c" \
  $(PKG_CONFIG_PATH="$libdir" pkg-config --cflags --libs flashport) -lm -o "$tmp/consumer_pc"
LD_LIBRARY_PATH="$(dirname "$libdir")" "$tmp/consumer_pc"
echo "install check: find_package and pkg-config consumers built and ran"
