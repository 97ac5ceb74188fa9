#!/usr/bin/env bash
# `make deb`: build the .deb with Debian's tooling, offline once the wheels are fetched.
#  1. our wheel (pip wheel .) and the bundled libraries' wheels (tools/deb_vendor.py pins them
#     to the versions in the development venv; pip's cache makes this quick after the first run)
#  2. a clean copy of the tree (tracked and new files, nothing ignored) in build/deb/otpguard-VERSION
#  3. dpkg-buildpackage -b (debhelper, dh-python) there; the .deb is copied to dist/
#  4. lintian on the result; tags not explained in debian/otpguard.lintian-overrides fail the build
set -euo pipefail
PY=${1:-.venv/bin/python}
cd "$(dirname "$0")/.."
ROOT=$PWD
VERSION=$(dpkg-parsechangelog -S Version)
TARGET_PY=$(/usr/bin/python3 -c 'import platform; print(platform.python_version())')
WORK=$ROOT/build/deb
SRC=$WORK/otpguard-$VERSION
rm -rf "$WORK" && mkdir -p "$SRC" "$ROOT/dist"

# The clean copy: what git knows or would add (symlinks kept: otpguard/defaults -> conf); from
# an unpacked sdist (no git), everything but build output and the venv.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    mkdir -p "$SRC/$(dirname "$f")" && cp -P "$f" "$SRC/$f"
  done
else
  tar --exclude=./.venv --exclude=./build --exclude=./dist --exclude='*.egg-info' -cf - . | tar -xf - -C "$SRC"
fi

mkdir -p "$SRC/debian/vendor"
"$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$SRC/debian/vendor" "$ROOT"
"$PY" tools/deb_vendor.py "$TARGET_PY" > "$WORK/vendor.txt"
# Built or fetched by the venv's Python 3.11: the same ABI (cp311) as Debian's python3 (3.11.x).
"$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$SRC/debian/vendor" -r "$WORK/vendor.txt"

(cd "$SRC" && dpkg-buildpackage -b -us -uc) > "$WORK/dpkg-buildpackage.log" 2>&1 \
  || { tail -40 "$WORK/dpkg-buildpackage.log" >&2; exit 1; }
DEB=$(ls "$WORK"/otpguard_"$VERSION"_*.deb)
cp "$DEB" "$ROOT/dist/"
echo "built dist/$(basename "$DEB")"

if command -v lintian >/dev/null; then
  lintian --fail-on error,warning --suppress-tags-from-file /dev/null "$DEB" | tee "$WORK/lintian.txt"
fi
