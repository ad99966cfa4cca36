#!/bin/sh
# Builds the release tarball that the AWS stack's instances unpack into /opt/imgcls:
#   dist/imgcls-<version>-linux-x86_64.tar.gz
#     imgcls-<version>/bin/imgcls                          the release build (build/imgcls)
#     imgcls-<version>/share/imgcls/mobilenet_v2.imgw      the model (labels are inside the .imgw)
#     imgcls-<version>/share/imgcls/systemd/*.service      the units cloud-init installs
#     imgcls-<version>/share/imgcls/imgcls-ready           the warm pool's lifecycle-hook script
#     imgcls-<version>/share/imgcls/cloud-init/*.yaml      the user data, for reference
#     imgcls-<version>/share/doc/imgcls/README.md          deploy/aws/README.md
# Usage: scripts/package.sh [BUILD_DIR]
#   VERSION=1.2.0 names the version (default: git describe); DIST_DIR=DIR writes elsewhere than dist/.
# The tarball is deterministic for a given tree: sorted names, owner root, mtime of the last commit.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build}
case $build in /*) ;; *) build=$repo/$build ;; esac
version=${VERSION:-$(git -C "$repo" describe --tags --always --dirty)}
name=imgcls-$version-linux-x86_64
bin=$build/imgcls
model=$repo/models/mobilenet_v2.imgw

die() { echo "package.sh: $*" >&2; exit 1; }
[ -x "$bin" ] || die "$bin is missing: run make build"
[ -f "$model" ] || die "$model is missing: run make models"
# Only the release build goes on the instances: a sanitizer build would need its runtime there, and is slow.
grep -q '^CMAKE_BUILD_TYPE:STRING=Release$' "$build/CMakeCache.txt" 2>/dev/null ||
  die "$build is not a Release build (CMAKE_BUILD_TYPE); use build/ from make build"
[ "$(uname -m)" = x86_64 ] || die "the tarball is named linux-x86_64; this machine is $(uname -m)"

# Every library the binary links must be one of the packages the user data installs, or the
# instances would fail at exec. Debian package names come from dpkg -S on the resolved path.
pkgs=$(sed -n '/^packages:/,/^[a-z_]*:/s/^  - //p' "$repo/deploy/aws/cloud-init/worker.yaml")
for lib in $(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
  path=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64/ { print $NF; exit }')
  [ -n "$path" ] || die "$lib (needed by imgcls) is not installed here"
  # dpkg knows a file by the path its package shipped: try the ldconfig path, then the resolved one
  # (merged /usr: /lib -> /usr/lib).
  pkg=$({ dpkg -S "$path" || dpkg -S "$(readlink -f "$path")"; } 2>/dev/null | head -n1 | cut -d: -f1)
  [ -n "$pkg" ] || die "no Debian package owns $path"
  echo "$pkgs" | grep -qx "$pkg" ||
    die "imgcls needs $lib from $pkg, which deploy/aws/cloud-init/{worker,web}.yaml do not install"
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/$name
install -d "$root/bin" "$root/share/imgcls/systemd" "$root/share/imgcls/cloud-init" "$root/share/doc/imgcls"
install -m 0755 "$bin" "$root/bin/imgcls"
install -m 0644 "$model" "$root/share/imgcls/mobilenet_v2.imgw"
install -m 0644 "$repo"/deploy/aws/systemd/*.service "$root/share/imgcls/systemd/"
install -m 0755 "$repo/deploy/aws/systemd/imgcls-ready" "$root/share/imgcls/imgcls-ready"
install -m 0644 "$repo"/deploy/aws/cloud-init/*.yaml "$root/share/imgcls/cloud-init/"
install -m 0644 "$repo/deploy/aws/README.md" "$root/share/doc/imgcls/README.md"
printf '%s\n' "$version" > "$root/share/imgcls/VERSION"

dist=${DIST_DIR:-$repo/dist}
mkdir -p "$dist"
out=$dist/$name.tar.gz
mtime=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)
tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" -cf - "$name" |
  gzip -n -9 > "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
