# Release builds and checks. `go run . serve` and `go test ./...` need none of this.

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GOFLAGS_RELEASE = -trimpath -tags nomsgpack -ldflags '-s -w -X main.version=$(VERSION)'
TARGETS = linux/amd64 linux/arm64 linux/arm
SIZE_LIMIT = 12582912

.PHONY: release size-check bench test

release:
	@mkdir -p dist
	@for t in $(TARGETS); do \
		os=$${t%/*}; arch=$${t#*/}; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=7 go build $(GOFLAGS_RELEASE) -o dist/vmsauth-$$os-$$arch . || exit 1; \
		echo "dist/vmsauth-$$os-$$arch $$(stat -c %s dist/vmsauth-$$os-$$arch) bytes"; \
	done

size-check: release
	@size=$$(stat -c %s dist/vmsauth-linux-amd64); \
	if [ $$size -gt $(SIZE_LIMIT) ]; then echo "amd64 binary is $$size bytes, over 12 MiB"; exit 1; fi; \
	echo "amd64 binary: $$size bytes, within 12 MiB"

bench:
	go test -run '^$$' -bench . -benchmem ./...

test:
	go test -race ./...
