#!/bin/sh
# Builds herd-demo-web_1.0_all.deb, the package the example site's web role
# installs from its files/ directory, so that the example converges on a host
# without network. The output is committed; run this after changing it.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../site/files/herd-demo-web_1.0_all.deb}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/DEBIAN" "$stage/usr/bin" "$stage/usr/share/doc/herd-demo-web"
cat > "$stage/DEBIAN/control" <<CTL
Package: herd-demo-web
Version: 1.0
Architecture: all
Maintainer: Herd developers <dev@herd.invalid>
Section: misc
Priority: optional
Description: stand-in web service for Herd's example site
 A small POSIX shell program that reads its config file and writes a
 heartbeat once a second, so that the example site has a real package
 and a real supervised service on any Debian host.
CTL
cp "$here/herd-demo-web" "$stage/usr/bin/herd-demo-web"
chmod 0755 "$stage/usr/bin/herd-demo-web"
printf 'herd-demo-web: a stand-in service for the Herd example site.\n' > "$stage/usr/share/doc/herd-demo-web/README"
SOURCE_DATE_EPOCH=1700000000 dpkg-deb --root-owner-group -Zgzip --build "$stage" "$out" >/dev/null
echo "$out"
