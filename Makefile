# knockdaemon: build, test and demo.
#
#   make build    bin/knockdaemon and bin/knockclient
#   make test     everything CI runs (.ci/run installs the tools, then runs this):
#                 gofmt, go vet, unit tests with -race, every fuzz target
#                 (sharing $(FUZZBUDGET) s), the end-to-end suite, the demo,
#                 cross-builds
#   make demo     the narrated network-namespace demo (root)
#   make bench    the performance table (bench/run.sh); make bench-go: Go benchmarks
#
# Real-kernel tests need root. Without root they skip; with CI=true (set by
# .ci/run) a skipped test fails the run.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.SILENT:
.DEFAULT_GOAL := build

GO        ?= go
FUZZBUDGET ?= 200
FUZZTIME  ?=
UNITTIME  ?= 12m
E2ETIME   ?= 10m
GOFLAGS_BUILD := -trimpath

.PHONY: build test fmt vet unit fuzz e2e cross demo demo-check bench bench-peers bench-go clean

build:
	mkdir -p bin
	$(GO) build $(GOFLAGS_BUILD) -o bin/knockdaemon ./knockdaemon
	$(GO) build $(GOFLAGS_BUILD) -o bin/knockclient ./knockclient
	echo "built bin/knockdaemon bin/knockclient"

test: fmt vet unit fuzz e2e demo-check cross
	echo "make test: all green"

fmt:
	bad=$$(gofmt -l .)
	if [[ -n $$bad ]]; then
		echo "gofmt: these files need formatting (run gofmt -w):"
		echo "$$bad"
		exit 1
	fi
	echo "gofmt: clean"

vet:
	$(GO) vet ./...
	echo "go vet: clean"

# gotest LABEL TIMEOUT PACKAGES...: go test -race -v, showing failures, skips
# and package results; fails on a failed test, on a skipped test under
# CI=true, and when no test ran at all.
define gotest
	log=$$(mktemp /tmp/knock-$(1).XXXXXX.log)
	set +e
	$(GO) test -race -count=1 -v -timeout $(2) $(3) 2>&1 | tee "$$log" \
		| grep --line-buffered -vE '^[[:space:]]*(=== (RUN|PAUSE|CONT|NAME)|--- PASS)'
	rc=$${PIPESTATUS[0]}
	set -e
	pass=$$(grep -cE '^[[:space:]]*--- PASS' "$$log" || true)
	fail=$$(grep -cE '^[[:space:]]*--- FAIL' "$$log" || true)
	skip=$$(grep -cE '^[[:space:]]*--- SKIP' "$$log" || true)
	echo "$(1): $$pass passed, $$fail failed, $$skip skipped in $${SECONDS}s (full log: $$log)"
	if [[ $$skip -gt 0 && $${CI:-} == true ]]; then
		echo "$(1): tests were skipped under CI=true:"
		grep -E '^[[:space:]]*--- SKIP' -A1 "$$log"
		exit 1
	fi
	if [[ $$pass -eq 0 ]]; then
		echo "$(1): no test ran"
		exit 1
	fi
	exit $$rc
endef

# Unit and package-level real-kernel tests; the end-to-end suite runs on its
# own afterwards so its timing is not disturbed by the rest.
unit:
	pkgs=$$($(GO) list ./... | grep -v '/e2e$$')
	$(call gotest,unit,$(UNITTIME),$$pkgs)

# The suite's tests are mostly waiting on the kernel and the clock; the two
# slow ones (a minute each) run beside the rest.
e2e:
	$(call gotest,e2e,$(E2ETIME),-parallel 8 ./e2e)

# Every fuzz target in the module, discovered with go test -list. They
# share a budget of $(FUZZBUDGET) seconds of fuzzing (10 to 30 s each), so CI
# stays bounded as targets are added; FUZZTIME=30s sets the time of each
# instead. A crasher is written under the package's testdata/fuzz and then
# fails the plain test run too.
fuzz:
	list=$$($(GO) test -list '^Fuzz' ./... | awk '/^Fuzz/ { names = names " " $$1 } /^ok / { if (names != "") print $$2 names; names = "" }')
	total=$$(awk '{ n += NF - 1 } END { print n + 0 }' <<<"$$list")
	if [[ $$total -eq 0 ]]; then echo "fuzz: no fuzz targets"; exit 0; fi
	per="$(FUZZTIME)"
	if [[ -z $$per ]]; then
		s=$$(($(FUZZBUDGET) / total))
		((s < 10)) && s=10
		((s > 30)) && s=30
		per="$${s}s"
	fi
	n=0
	while read -r pkg names; do
		[[ -n $$pkg ]] || continue
		for name in $$names; do
			n=$$((n + 1))
			echo "fuzz: [$$n/$$total] $$pkg $$name for $$per"
			rc=0
			$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime "$$per" "$$pkg" 2>&1 \
				| { grep -v -E '^fuzz: elapsed: [0-9]+s, execs' || true; } || rc=$$?
			if [[ $$rc -ne 0 ]]; then
				echo "fuzz: $$pkg $$name FAILED (a crasher is saved under its testdata/fuzz)"
				exit "$$rc"
			fi
		done
	done <<<"$$list"
	echo "fuzz: $$n targets, $$per each, $${SECONDS}s in all"

# knockclient runs on laptops of every kind; knockdaemon also on FreeBSD
# (ipfw). One architecture each keeps CI short: the code has no
# architecture-specific parts, only OS-specific ones.
cross:
	for target in windows/amd64 darwin/arm64 freebsd/amd64; do
		echo "cross: knockclient for $$target"
		GOOS=$${target%/*} GOARCH=$${target#*/} $(GO) build -o /dev/null ./knockclient
	done
	echo "cross: knockdaemon for freebsd/amd64"
	GOOS=freebsd GOARCH=amd64 $(GO) build -o /dev/null ./knockdaemon
	echo "cross: done in $${SECONDS}s"

demo:
	./demo.sh

# The demo as part of make test, so it cannot rot: it needs root, and under
# CI=true not being able to run it is a failure.
demo-check:
	if [[ $$(id -u) -ne 0 ]]; then
		if [[ $${CI:-} == true ]]; then echo "demo: cannot run without root under CI=true"; exit 1; fi
		echo "demo: skipped (needs root)"
		exit 0
	fi
	out=$$(mktemp /tmp/knock-demo-output.XXXXXX)
	if ./demo.sh >"$$out" 2>&1; then
		echo "demo: ok in $${SECONDS}s (output: $$out)"
	else
		cat "$$out"
		echo "demo: FAILED"
		exit 1
	fi

# Every performance figure in one table (bench/run.sh, about 3 minutes;
# bench-peers also measures knockd and fail2ban); bench-go: just the
# packages' Go benchmarks.
bench:
	./bench/run.sh $(BENCHFLAGS)

# The same, with knockd and fail2ban installed from Debian and measured too.
bench-peers:
	./bench/run.sh --peers

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
