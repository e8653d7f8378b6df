#!/bin/sh
# Builds the example site's flat apt repository, files/repo/: a tiny
# package (herd-demo-tools), its Packages index, a Release listing the
# index's digest, and an InRelease clear-signed with a key made for this
# run. Only the public key is kept (files/herd-demo-repo.asc, which the
# web role's apt_repository names); the private key is thrown away with
# its temporary GNUPGHOME, so rebuilding makes a new key. The output is
# committed; run this after changing the package.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
site=${1:-$here/../site}
repo=$site/files/repo
stage=$(mktemp -d)
gnupg=$(mktemp -d)
trap 'gpgconf --homedir "$gnupg" --kill gpg-agent 2>/dev/null || true; rm -rf "$stage" "$gnupg"' EXIT
mkdir -p "$repo" "$stage/DEBIAN" "$stage/usr/share/herd-demo-tools"
cat > "$stage/DEBIAN/control" <<CTL
Package: herd-demo-tools
Version: 1.0
Architecture: all
Maintainer: Herd developers <dev@herd.invalid>
Section: misc
Priority: optional
Description: a package the example site installs from its own apt repository
 It holds one file, so that the example's apt_repository has a package
 to install by name, from a signed flat repository the site ships.
CTL
printf 'herd-demo-tools 1.0: installed by name from the site'"'"'s own apt repository.\n' > "$stage/usr/share/herd-demo-tools/README"
deb=herd-demo-tools_1.0_all.deb
SOURCE_DATE_EPOCH=1700000000 dpkg-deb --root-owner-group -Zgzip --build "$stage" "$repo/$deb" >/dev/null
size=$(stat -c %s "$repo/$deb")
sum=$(sha256sum "$repo/$deb" | cut -d' ' -f1)
cat > "$repo/Packages" <<PKG
Package: herd-demo-tools
Version: 1.0
Architecture: all
Maintainer: Herd developers <dev@herd.invalid>
Filename: ./$deb
Size: $size
SHA256: $sum
Description: a package the example site installs from its own apt repository

PKG
isum=$(sha256sum "$repo/Packages" | cut -d' ' -f1)
isize=$(stat -c %s "$repo/Packages")
cat > "$repo/Release" <<REL
Origin: herd-example
Label: herd-example
Date: $(LC_ALL=C date -u -d @1700000000 '+%a, %d %b %Y %H:%M:%S UTC')
SHA256:
 $isum $isize Packages
REL
# Key and signature dated at the package's SOURCE_DATE_EPOCH: gpgv refuses
# a signature from the future, and a machine's clock may lag the builder's.
g() { gpg --batch --quiet --homedir "$gnupg" --faked-system-time 20231114T221320! "$@"; }
g --passphrase '' --quick-gen-key 'Herd example repository <repo@herd.invalid>' ed25519 sign never
g --yes --clearsign -o "$repo/InRelease" "$repo/Release"
g --armor --export > "$site/files/herd-demo-repo.asc"
echo "$repo"
