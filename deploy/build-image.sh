#!/usr/bin/env bash
# Build the rig's images without a registry: each is a root filesystem holding a binary, the
# shared libraries `ldd` lists for it, the dynamic loader, /etc/passwd with a uid-1000 user and
# the CA bundle, packed into a tarball and loaded with `docker import`. No shell, no package
# manager: the containers run the binary and nothing else.
#
#   deploy/build-image.sh loci        [BINARY]   -> loci:dev            (default BINARY: $CARGO_TARGET_DIR/debug/loci)
#   deploy/build-image.sh redis                  -> loci-redis:dev      (Debian's redis-server and redis-cli)
#   deploy/build-image.sh prometheus             -> loci-prometheus:dev (Debian's prometheus and promtool)
#   deploy/build-image.sh all         [BINARY]
set -euo pipefail

TAG=${IMAGE_TAG:-dev}
WORK=$(mktemp -d /var/tmp/loci-image.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

die() { echo "build-image: $*" >&2; exit 1; }

# rootfs DIR BINARY...: copy each binary to /usr/bin with its libraries and the loader.
rootfs() {
    local root=$1; shift
    mkdir -p "$root"/{usr/bin,etc,data,tmp,lib64,etc/ssl/certs}
    chmod 1777 "$root/tmp"
    for bin in "$@"; do
        [ -x "$bin" ] || die "$bin is not an executable (build it first)"
        cp -L "$bin" "$root/usr/bin/$(basename "$bin")"
        # `ldd` lines: "libx.so => /path (addr)" or "/lib64/ld-linux-x86-64.so.2 (addr)".
        ldd "$bin" | awk '/=> \// {print $3} /^[ \t]*\/[^ ]+ \(/ {print $1}' | while read -r lib; do
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
        done
    done
    # A uid-1000 user, and the files Docker bind-mounts over (they must exist on a read-only root).
    printf 'root:x:0:0:root:/:/usr/sbin/nologin\nloci:x:1000:1000:loci:/data:/usr/sbin/nologin\n' >"$root/etc/passwd"
    printf 'root:x:0:\nloci:x:1000:\n' >"$root/etc/group"
    printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
    : >"$root/etc/hosts"; : >"$root/etc/resolv.conf"; : >"$root/etc/hostname"
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
    fi
    chown 1000:1000 "$root/data"
}

# import DIR IMAGE CHANGE...: tar the root filesystem and load it.
import() {
    local root=$1 image=$2; shift 2
    local args=()
    for c in "$@"; do args+=(--change "$c"); done
    tar --numeric-owner -C "$root" -cf "$WORK/$(basename "$root").tar" .
    docker image rm -f "$image" >/dev/null 2>&1 || true
    docker import "${args[@]}" "$WORK/$(basename "$root").tar" "$image" >/dev/null
    echo "built $image ($(du -sh "$WORK/$(basename "$root").tar" | cut -f1) root filesystem)"
}

build_loci() {
    local bin=${1:-${CARGO_TARGET_DIR:-/var/tmp/loci-target}/debug/loci}
    local root="$WORK/loci"
    rootfs "$root" "$bin"
    [ "$(basename "$bin")" = loci ] || mv "$root/usr/bin/$(basename "$bin")" "$root/usr/bin/loci"
    mkdir -p "$root/models"
    import "$root" "loci:$TAG" \
        'USER 1000:1000' \
        'WORKDIR /data' \
        'ENV LOCI_DATA_DIR=/data LOCI_HTTP_ADDR=0.0.0.0:3300 LOCI_GRPC_ADDR=0.0.0.0:50051 LOCI_GOSSIP_ADDR=0.0.0.0:7946 LOCI_EMBEDDING_MODEL_DIR=/models/all-MiniLM-L6-v2 LOCI_LOG_FORMAT=json' \
        'EXPOSE 3300/tcp 50051/tcp 7946/udp' \
        'VOLUME /data' \
        'ENTRYPOINT ["/usr/bin/loci"]' \
        'CMD ["serve"]'
}

build_redis() {
    local root="$WORK/redis"
    rootfs "$root" "$(command -v redis-server)" "$(command -v redis-cli)"
    import "$root" "loci-redis:$TAG" \
        'USER 1000:1000' \
        'WORKDIR /data' \
        'EXPOSE 6379/tcp' \
        'VOLUME /data' \
        'ENTRYPOINT ["/usr/bin/redis-server"]' \
        'CMD ["--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/data", "--save", "", "--appendonly", "no"]'
}

build_prometheus() {
    local root="$WORK/prometheus"
    command -v prometheus >/dev/null || die "prometheus is not installed (apt-get install prometheus)"
    rootfs "$root" "$(command -v prometheus)" "$(command -v promtool)"
    mkdir -p "$root/etc/prometheus"
    import "$root" "loci-prometheus:$TAG" \
        'USER 1000:1000' \
        'WORKDIR /data' \
        'EXPOSE 9090/tcp' \
        'VOLUME /data' \
        'ENTRYPOINT ["/usr/bin/prometheus"]' \
        'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/data", "--web.listen-address=0.0.0.0:9090"]'
}

case "${1:-all}" in
    loci) build_loci "${2:-}" ;;
    redis) build_redis ;;
    prometheus) build_prometheus ;;
    all) build_loci "${2:-}"; build_redis; build_prometheus ;;
    *) die "usage: $0 loci|redis|prometheus|all [LOCI_BINARY]" ;;
esac
