#!/usr/bin/env bash
# The benchmarks' reference programs: wrk (load, and the machine's limit) and Debian's
# prometheus-blackbox-exporter (the peer). Installed with apt when missing and run as root;
# otherwise says which rows will read "not installed" and why. Never fails `make bench`.
set -u
declare -A need=([wrk]=wrk [prometheus-blackbox-exporter]=prometheus-blackbox-exporter)
missing=()
for bin in "${!need[@]}"; do
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/bin/$bin" ] || missing+=("${need[$bin]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
why=""
if [ "$(id -u)" -ne 0 ]; then
    why="not root (run: sudo apt-get install -y ${missing[*]})"
elif ! command -v apt-get >/dev/null 2>&1; then
    why="no apt-get on this machine (install ${missing[*]} by hand)"
else
    echo "install_tools: apt-get install ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # A stale package list is the usual reason for "unable to locate": update once, then retry.
    if ! timeout 600 apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
        timeout 300 apt-get update -qq >/dev/null 2>&1
        timeout 600 apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
            why="apt-get install ${missing[*]} failed (offline, or no such package here)"
    fi
fi
if [ -n "$why" ]; then
    echo "install_tools: ${missing[*]} missing: $why; their benchmark rows will read" \
        "'not installed'" >&2
fi
exit 0
