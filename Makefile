# Release builds and checks. `go run . serve` and `go test ./...` need none of this.

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GOFLAGS_RELEASE = -trimpath -tags nomsgpack -ldflags '-s -w -X vmsauth/cli.version=$(VERSION)'
TARGETS = linux/amd64 linux/arm64 linux/arm
SIZE_LIMIT = 12000000

# nfpm's command at a pinned version (go run checks it against the Go
# checksum database); tools/deb says why not its library.
NFPM = go run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
DEB_ARCHES = amd64 arm64 armhf
DEB_MAINTAINER ?= vmsauth maintainers <vmsauth@example.com>

# The benchmarks each report a ratio against a baseline measured in the same
# run (see web/bench_test.go); BENCHTIME=1x makes a smoke run of a few seconds.
BENCHTIME ?= 3s

.PHONY: release size-check deb bench measure fwdbench sitebench test

release:
	@mkdir -p dist
	@for t in $(TARGETS); do \
		os=$${t%/*}; arch=$${t#*/}; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=7 go build $(GOFLAGS_RELEASE) -o dist/vmsauth-$$os-$$arch . || exit 1; \
		echo "dist/vmsauth-$$os-$$arch $$(stat -c %s dist/vmsauth-$$os-$$arch) bytes"; \
	done

# dist/vmsauth_<version>_{amd64,arm64,armhf}.deb from the release binaries:
# the version comes from git describe (tools/deb/main.go, debianVersion).
deb: release
	@rm -f dist/vmsauth_*.deb
	go run ./tools/deb -describe '$(VERSION)' -date "$$(git log -1 --format=%cI)" \
		-dist dist -out dist/deb-build -arches '$(DEB_ARCHES)' -maintainer '$(DEB_MAINTAINER)'
	@for a in $(DEB_ARCHES); do \
		$(NFPM) package --config dist/deb-build/nfpm-$$a.json --packager deb --target dist/ || exit 1; \
	done

size-check: release
	@size=$$(stat -c %s dist/vmsauth-linux-amd64); \
	if [ $$size -gt $(SIZE_LIMIT) ]; then echo "amd64 binary is $$size bytes, over 12 MB"; exit 1; fi; \
	echo "amd64 binary: $$size bytes, within 12 MB"

# -p 1 runs one package at a time, or their loads would share the cores.
bench:
	go test -p 1 -run '^$$' -bench . -benchtime $(BENCHTIME) ./web/ ./store/ ./captcha/

# Binary sizes, start-to-first-answer time and RSS with 100k live sessions,
# from the release binary run on temporary data directories.
measure: release
	go run ./tools/measure -dist dist

test:
	go test -race ./...

# Forward auth through a real nginx (one worker) with wrk: a location protected
# by vmsauth's --forward-auth-listen against the same location whose auth
# subrequest goes to an nginx server block that only answers 200, over a unix
# socket and over TCP loopback. Needs nginx and wrk (apt-get install nginx wrk).
fwdbench: release
	go run ./tools/fwdbench -dist dist

# A site of several boxes on one etcd cluster (3 members started by the tool
# on loopback, Debian's etcd-server): token checks against the same box on
# bbolt, logins over two boxes against bcrypt on all cores, and the delay
# from a logout on one box to the other refusing the token.
sitebench: release
	go run ./tools/sitebench -dist dist
