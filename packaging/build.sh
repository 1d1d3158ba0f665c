#!/usr/bin/env bash
# Builds versioned release artifacts: static binaries and deb/rpm packages of
# dsrlb-common, dsrlb-lbd and dsrlb-hostprep for amd64 and arm64, plus
# SHA256SUMS. Run from anywhere; output in out/release/.
#   packaging/build.sh            # version from VERSION
#   VERSION=0.2.0 packaging/build.sh
#   RELEASE_DIR=/tmp/x FORMATS=deb ARCHES=amd64 packaging/build.sh   # what tests use
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
VERSION=${VERSION:-$(cat VERSION)}
ARCHES=${ARCHES:-amd64 arm64}
FORMATS=${FORMATS:-deb rpm}
export VERSION
rel=${RELEASE_DIR:-out/release}
# nfpm reads fixed paths under out/ (it expands no variables in src:), so
# two builds at once (test packages run in parallel) take turns.
mkdir -p out
exec 9>out/.build.lock
flock 9
rm -rf "$rel" && mkdir -p "$rel"
# Man pages and shell completions, from the command trees themselves: a
# host-arch build stamped like the release binaries, so the pages say
# "dsrlb $VERSION" (any arch's pages and completions are the same).
rm -rf out/man out/completions out/host && mkdir -p out/man out/completions out/host
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
for bin in lbd hostprep; do
	CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$VERSION" -o "out/host/$bin" "./$bin"
	"out/host/$bin" man out/man
	"out/host/$bin" completion bash > "out/completions/$bin.bash"
	"out/host/$bin" completion zsh > "out/completions/_$bin"
	"out/host/$bin" completion fish > "out/completions/$bin.fish"
done
gzip -n -9 out/man/*.8 out/man/*.5
for arch in $ARCHES; do
	mkdir -p "out/$arch"
	for bin in lbd hostprep; do
		CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath \
			-ldflags "-s -w -X main.version=$VERSION" -o "out/$arch/$bin" "./$bin"
	done
	# nfpm does not expand variables in src: stage this arch's binaries at a fixed path.
	rm -rf out/stage && cp -r "out/$arch" out/stage && cp -r out/man out/stage/man && cp -r out/completions out/stage/completions
	# Debian wants a native package's changelog as changelog.gz; -n keeps
	# the archive (and so the package) free of timestamps.
	gzip -n -9 -c packaging/debian.changelog > out/stage/changelog.gz
	export ARCH=$arch
	for pkg in common lbd hostprep; do
		if [ "$pkg" = common ] && [ "$arch" != "${ARCHES%% *}" ]; then continue; fi # arch: all, once
		for fmt in $FORMATS; do
			go tool -modfile=tools/go.mod nfpm package --config "packaging/nfpm/$pkg.yaml" --packager "$fmt" --target "$rel/"
		done
	done
done
(cd "$rel" && sha256sum -- *.deb $(ls -- *.rpm 2>/dev/null) > SHA256SUMS)
ls -1 "$rel"
