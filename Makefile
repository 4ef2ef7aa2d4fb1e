# udpd: build, install and uninstall.
#
#   make                                   swift build -c release --static-swift-stdlib -Xswiftc -Osize \
#                                              --scratch-path .build-static
#   make install [PREFIX=/usr/local] [DESTDIR=/tmp/stage]
#   make uninstall [PREFIX=...] [DESTDIR=...]
#   make check                             install into a temporary DESTDIR, uninstall, and check nothing is left
#
# Release binaries link the Swift runtime and Foundation in (--static-swift-stdlib), the usual way to deploy a
# Swift server on Linux: nothing from the toolchain is needed at run time, and an idle udpd is about 14 MiB
# resident instead of 20 (Package.swift says how they are linked). They build in their own scratch path, so
# that `make install` never picks up a dynamically linked binary of a plain `swift build -c release`, and switching
# between the two never recompiles everything. Benchmarks/run.sh builds and measures these same binaries.
#
# They are optimised for size (-Osize): udpd's datapath spends over 90% of its time in the kernel, and with -Osize
# an echo costs the same CPU per datagram (5.07 against 5.14 us, within noise) while an idle udpd maps 1.6 MiB
# less of its own code (14.7 against 16.3 MiB). The control plane pays a little: a one-change reload of 1,000
# services 11-14 ms instead of 10-11, status 3.5 ms instead of 3.2 (BENCHMARKS.md).
#
# `make install` does not rebuild when the binaries exist; BINDIR_SOURCE picks which ones are installed
# (for example BINDIR_SOURCE=.build/debug). It installs udpd in sbin, udpctl in bin, the man pages, shell
# completions for udpctl, the examples, the systemd units (with this PREFIX's paths), and the example
# configuration as $(SYSCONFDIR)/udpd/services.yaml unless that file exists. It writes a manifest of every file
# and directory it created, and `make uninstall` removes exactly those (a configuration file only if unchanged,
# a directory only if empty).

PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
SWIFT ?= swift
RELEASE_BUILD := build -c release --static-swift-stdlib -Xswiftc -Osize --scratch-path .build-static
BINDIR_SOURCE ?= .build-static/release

BINDIR := $(PREFIX)/bin
SBINDIR := $(PREFIX)/sbin
MANDIR := $(PREFIX)/share/man
DOCDIR := $(PREFIX)/share/doc/udpd
UNITDIR := $(PREFIX)/lib/systemd/system
BASHCOMPDIR := $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR := $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR := $(PREFIX)/share/fish/vendor_completions.d
CONFDIR := $(SYSCONFDIR)/udpd
MANIFEST := $(DOCDIR)/install-manifest

MAN5 := $(wildcard man/*.5)
MAN8 := $(wildcard man/*.8)
EXAMPLES := $(wildcard examples/*.yaml examples/*.socket examples/*.service)

.PHONY: all build install uninstall check

all: build

build:
	$(SWIFT) $(RELEASE_BUILD) --product udpd
	$(SWIFT) $(RELEASE_BUILD) --product udpctl

# Built only when missing, so that `make install` after `make` (or as root after a user's build) never rebuilds.
$(BINDIR_SOURCE)/udpd $(BINDIR_SOURCE)/udpctl:
	$(SWIFT) $(RELEASE_BUILD) --product $(notdir $@)

# Shell helpers: `mkd DIR` creates DIR (under DESTDIR) and each missing parent, recording what it created;
# `put MODE SRC DEST` installs a file and records it.
define INSTALL_HELPERS
staged="$$(mktemp)"; \
mkd() { p=""; for part in $$(printf '%s' "$$1" | tr '/' ' '); do p="$$p/$$part"; \
  if [ ! -d "$(DESTDIR)$$p" ]; then mkdir "$(DESTDIR)$$p"; echo "dir $$p" >> "$$staged"; fi; done; }; \
put() { install -m "$$1" "$$2" "$(DESTDIR)$$3"; echo "file $$3" >> "$$staged"; }
endef

install: $(BINDIR_SOURCE)/udpd $(BINDIR_SOURCE)/udpctl
	@set -e; $(INSTALL_HELPERS); \
	if [ -n "$(DESTDIR)" ]; then mkdir -p "$(DESTDIR)"; fi; \
	if [ -f "$(DESTDIR)$(MANIFEST)" ]; then cat "$(DESTDIR)$(MANIFEST)" > "$$staged"; fi; \
	for d in $(BINDIR) $(SBINDIR) $(MANDIR)/man5 $(MANDIR)/man8 $(DOCDIR)/examples $(UNITDIR) \
	         $(BASHCOMPDIR) $(ZSHCOMPDIR) $(FISHCOMPDIR) $(CONFDIR); do mkd "$$d"; done; \
	put 0755 $(BINDIR_SOURCE)/udpd $(SBINDIR)/udpd; \
	put 0755 $(BINDIR_SOURCE)/udpctl $(BINDIR)/udpctl; \
	for page in $(MAN5); do put 0644 "$$page" $(MANDIR)/man5/$$(basename "$$page"); done; \
	for page in $(MAN8); do put 0644 "$$page" $(MANDIR)/man8/$$(basename "$$page"); done; \
	for example in $(EXAMPLES); do put 0644 "$$example" $(DOCDIR)/examples/$$(basename "$$example"); done; \
	put 0644 README.md $(DOCDIR)/README.md; \
	for unit in udpd.service udpd.socket; do \
	    sed -e 's|/usr/local/sbin/udpd|$(SBINDIR)/udpd|g' -e 's|/usr/local/bin/udpctl|$(BINDIR)/udpctl|g' \
	        -e 's|/etc/udpd/|$(CONFDIR)/|g' "examples/$$unit" \
	        > "$(DESTDIR)$(UNITDIR)/$$unit"; chmod 0644 "$(DESTDIR)$(UNITDIR)/$$unit"; echo "file $(UNITDIR)/$$unit" >> "$$staged"; \
	done; \
	$(BINDIR_SOURCE)/udpctl --generate-completion-script bash > "$(DESTDIR)$(BASHCOMPDIR)/udpctl"; \
	$(BINDIR_SOURCE)/udpctl --generate-completion-script zsh > "$(DESTDIR)$(ZSHCOMPDIR)/_udpctl"; \
	$(BINDIR_SOURCE)/udpctl --generate-completion-script fish > "$(DESTDIR)$(FISHCOMPDIR)/udpctl.fish"; \
	printf 'file %s\n' $(BASHCOMPDIR)/udpctl $(ZSHCOMPDIR)/_udpctl $(FISHCOMPDIR)/udpctl.fish >> "$$staged"; \
	if [ ! -e "$(DESTDIR)$(CONFDIR)/services.yaml" ]; then \
	    sed -e 's|^  socket: /tmp/udpd-example/control.sock|  socket: /run/udpd/control.sock|' examples/services.yaml \
	        > "$(DESTDIR)$(CONFDIR)/services.yaml"; chmod 0644 "$(DESTDIR)$(CONFDIR)/services.yaml"; \
	    echo "config $(CONFDIR)/services.yaml $$(cksum < "$(DESTDIR)$(CONFDIR)/services.yaml" | tr ' ' '-')" >> "$$staged"; \
	else echo "keeping $(DESTDIR)$(CONFDIR)/services.yaml"; fi; \
	sort -u "$$staged" > "$(DESTDIR)$(MANIFEST)"; rm -f "$$staged"; \
	echo "installed udpd into $(DESTDIR)$(PREFIX) (manifest: $(DESTDIR)$(MANIFEST))"

uninstall:
	@set -e; manifest="$(DESTDIR)$(MANIFEST)"; \
	if [ ! -f "$$manifest" ]; then echo "uninstall: no $$manifest: nothing was installed there"; exit 0; fi; \
	grep '^file ' "$$manifest" | cut -d' ' -f2- | while read -r f; do rm -f "$(DESTDIR)$$f"; done; \
	grep '^config ' "$$manifest" | while read -r kind f sum; do \
	    if [ -f "$(DESTDIR)$$f" ] && [ "$$(cksum < "$(DESTDIR)$$f" | tr ' ' '-')" = "$$sum" ]; then rm -f "$(DESTDIR)$$f"; \
	    elif [ -e "$(DESTDIR)$$f" ]; then echo "keeping $(DESTDIR)$$f: it was changed after install"; fi; \
	done; \
	dirs=$$(grep '^dir ' "$$manifest" | cut -d' ' -f2- | sort -r); \
	rm -f "$$manifest"; \
	for d in $$dirs; do rmdir "$(DESTDIR)$$d" 2>/dev/null || true; done; \
	echo "uninstalled udpd from $(DESTDIR)$(PREFIX)"

check:
	@set -e; stage="$$(mktemp -d)"; \
	$(MAKE) --no-print-directory install DESTDIR="$$stage" BINDIR_SOURCE="$(BINDIR_SOURCE)"; \
	$(MAKE) --no-print-directory uninstall DESTDIR="$$stage"; \
	left="$$(find "$$stage" -mindepth 1)"; rmdir "$$stage" 2>/dev/null || true; \
	if [ -n "$$left" ]; then echo "check: uninstall left:"; echo "$$left"; exit 1; fi; \
	echo "check: install and uninstall leave nothing behind"
