#!/usr/bin/env bash
# Base images for a machine where no image registry answers: each IMAGE that is not in
# podman's storage and cannot be pulled is made here from Debian's packages, under the same
# short name (podman keeps it as localhost/NAME), so `podman build --pull=never` finds it.
#
# Usage: scripts/base-images.sh IMAGE...
#
#   debian:<suite>[-slim]   debootstrap --variant=minbase <suite> from the Debian mirror apt
#                           uses here (`apt-get indextargets`), then for -slim what Debian's
#                           -slim images leave out (docs but copyrights, man and info pages,
#                           locales; debuerreotype's slimify), `podman import`ed, CMD bash
#   rust:<version>-<suite>  deploy/images/rust.Containerfile on debian:<suite>-slim: Debian's
#                           gcc, libc6-dev and ca-certificates, and rustup's <version> toolchain
#                           (installed if missing), with the official image's CARGO_HOME
#                           (/usr/local/cargo) and RUSTUP_HOME (/usr/local/rustup)
#   logproxy-<name>:debian  deploy/images/<name>.Containerfile on debian:bookworm-slim:
#                           clickhouse and prometheus from Debian's packages (deploy/compose.yaml)
#
# A pull asks for the name as given, so the machine's registries.conf (its short-name
# aliases and search registries) decides where from, and it is given 2 minutes;
# IMAGE_PULL=never skips the pull.
# Podman runs with deploy/images/containers.conf unless CONTAINERS_CONF says otherwise.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib.sh
(( $# > 0 )) || die "usage: scripts/base-images.sh IMAGE..."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/images/containers.conf}"
command -v podman >/dev/null 2>&1 || ensure_packages podman runc

# mirror SUITE: the URI of the Debian archive apt fetches SUITE (or, failing that, any
# suite of the main archive) from, as the machine's sources.list(.d) say.
mirror() {
    local uri release found=""
    # shellcheck disable=SC2016   # $(...) is apt's own field syntax
    while read -r uri release; do
        [[ "$release" != "$1" ]] || { echo "${uri%/}"; return; }
        [[ -n "$found" || "$release" == *-* ]] || found="${uri%/}"
    done < <(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Created-By: Packages' | sort -u)
    [[ -n "$found" ]] || die "no Debian mirror in apt's sources (/etc/apt/sources.list*)"
    echo "$found"
}

make_debian() { # SUITE SLIM(0|1) NAME
    local suite="$1" slim="$2" name="$3" from work started=$SECONDS
    from="$(mirror "$suite")"
    ensure_packages debootstrap debian-archive-keyring
    work="$(mktemp -d /var/tmp/base-image.XXXXXX)"
    log "$name: debootstrap --variant=minbase $suite from $from"
    if ! debootstrap --variant=minbase "$suite" "$work/root" "$from" >"$work/log" 2>&1; then
        tail -n 20 "$work/log" >&2
        rm -rf --one-file-system "$work"
        die "$name: debootstrap failed"
    fi
    if (( slim )); then
        # What debuerreotype-slimify leaves out, and keeps out of later installs.
        cat >"$work/root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
        find "$work/root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
        find "$work/root/usr/share/doc" -mindepth 1 -depth -type d -empty -delete
        rm -rf "$work/root/usr/share/info/"* "$work/root/usr/share/locale/"* "$work/root/usr/share/man/"*
    fi
    rm -rf "$work/root/var/lib/apt/lists/"* "$work/root/var/cache/apt/"*.bin
    tar -C "$work/root" --numeric-owner -cf - . \
        | podman import --quiet --change 'CMD ["bash"]' - "$name" >/dev/null
    rm -rf --one-file-system "$work"
    log "$name: made in $(( SECONDS - started )) s"
}

# build NAME ARGS...: podman build -t NAME ARGS, its output shown only when it fails.
build() {
    local name="$1" out
    shift
    out="$(mktemp)"
    podman build --pull=never --layers=false --network=host --format docker -t "$name" "$@" \
        >"$out" 2>&1 || { tail -n 30 "$out" >&2; rm -f "$out"; die "$name: podman build failed"; }
    rm -f "$out"
}

make_rust() { # VERSION SUITE NAME
    local version="$1" suite="$2" name="$3" sysroot started=$SECONDS
    need_cargo
    rustup run "$version" rustc --version >/dev/null 2>&1 \
        || rustup toolchain install "$version" --profile minimal
    sysroot="$(rustup run "$version" rustc --print sysroot)"
    ensure_image "debian:$suite-slim"
    log "$name: Debian's gcc and Rust $version from $sysroot on debian:$suite-slim"
    build "$name" --build-arg "BASE=debian:$suite-slim" \
        --build-arg "RUST_VERSION=$(rustup run "$version" rustc --version | cut -d' ' -f2)" \
        -f deploy/images/rust.Containerfile "$sysroot"
    log "$name: made in $(( SECONDS - started )) s"
}

make_from_debian() { # WHAT NAME
    local started=$SECONDS
    ensure_image debian:bookworm-slim
    log "$2: deploy/images/$1.Containerfile on debian:bookworm-slim"
    build "$2" -f "deploy/images/$1.Containerfile" deploy/images
    log "$2: made in $(( SECONDS - started )) s"
}

ensure_image() {
    local name="$1"
    podman image exists "$name" && return 0
    if [[ "${IMAGE_PULL:-}" != never ]] && timeout 120 podman pull --quiet "$name" >/dev/null 2>&1; then
        log "$name: pulled"
        return 0
    fi
    if [[ "$name" =~ ^debian:([a-z]+)(-slim)?$ ]]; then
        make_debian "${BASH_REMATCH[1]}" "$([[ -n "${BASH_REMATCH[2]}" ]] && echo 1 || echo 0)" "$name"
    elif [[ "$name" =~ ^rust:([0-9]+\.[0-9]+(\.[0-9]+)?)-([a-z]+)$ ]]; then
        make_rust "${BASH_REMATCH[1]}" "${BASH_REMATCH[3]}" "$name"
    elif [[ "$name" =~ ^logproxy-(clickhouse|prometheus):debian$ ]]; then
        make_from_debian "${BASH_REMATCH[1]}" "$name"
    else
        die "$name: not in podman's storage, cannot be pulled, and not one this script makes"
    fi
}

for image in "$@"; do ensure_image "$image"; done
