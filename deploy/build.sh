#!/bin/sh
# Build the production warden: `cargo build --release --no-default-features` (no `warden sandbox`),
# not position-independent, with the functions warden runs laid out next to each other in .text.
#
#   deploy/build.sh [OUT]      (default OUT: target/release/warden-lean)
#
# Why the layout: the kernel maps a file page together with the cached pages of its 64 KiB
# window ("fault-around"), and a fault reads far ahead, so RSS counts every 64 KiB window of the
# binary that any executed function touches. Start-up and serving run ~0.9 MiB of functions
# spread over almost all of the 3.5 MiB of code; listed first they fill ~15 windows instead of
# ~50 (bench/RESULTS.md, "Memory").
#
# deploy/warden.order lists those functions (their symbol names in the build it was made from); bench/layout.sh regenerates it. Two links: an
# unstripped one to learn the symbols' full names, then the ordered one. A stale list or a linker
# without --symbol-ordering-file (GNU ld; rustc >= 1.90 links with lld on x86_64 Linux) only
# costs memory, never correctness: the script then builds the plain layout and says so.
set -eu
cd "$(dirname "$0")/.."
out=${1:-target/release/warden-lean}
order=deploy/warden.order
symbols=target/warden.symbol-order

# Both links run every time (touch): a binary left in target/release by another build must never
# be mistaken for this one's.
touch src/main.rs
cargo rustc --release --locked --no-default-features --bin warden -- -C strip=none
# Full names of the listed functions, in the list's order. The list holds the names of the build
# it was made from; a build with another compiler or other dependency versions has other hashes,
# and then names are compared without them (which also picks generic instances that did not run).
nm --defined-only target/release/warden | awk '$2 ~ /^[tT]$/ { print $3 }' >"$symbols.all"
awk -v list="$order" '
    function key(s) { sub(/17h[0-9a-f]+E$/, "E", s); gsub(/Cs[0-9A-Za-z]+_/, "Cs_", s); return s }
    BEGIN {
        while ((getline name < list) > 0) {
            if (name ~ /^#/ || name == "") continue
            rank[name] = ++n
            if (!(key(name) in krank)) krank[key(name)] = n
        }
    }
    { sym[NR] = $1; if ($1 in rank) exact++ }
    END {
        by_key = exact < n / 2
        for (i = 1; i <= NR; i++) {
            if (!by_key && sym[i] in rank) print rank[sym[i]], sym[i]
            if (by_key && key(sym[i]) in krank) print krank[key(sym[i])], sym[i]
        }
        printf "deploy/build.sh: %d of %d listed names found as they are%s\n", exact, n,
            by_key ? "; matching without hashes" : "" > "/dev/stderr"
    }' "$symbols.all" | sort -n -k1,1 | cut -d' ' -f2 >"$symbols"
echo "deploy/build.sh: $(wc -l <"$symbols") functions placed first" >&2

touch src/main.rs
# Non-PIE: a position-independent executable's relocated data (.data.rel.ro, ~200 KiB) becomes
# private copies at load; at a fixed address it stays clean file pages. The price: warden's own
# code and data are not randomised by ASLR (libraries, heap and stacks still are).
if cargo rustc --release --locked --no-default-features --bin warden -- -C relocation-model=static \
    -C link-arg=-Wl,--symbol-ordering-file="$PWD/$symbols" -C link-arg=-Wl,--no-warn-symbol-ordering; then
    :
else
    echo "deploy/build.sh: the ordered link failed (a linker without --symbol-ordering-file?);" \
        "building the plain layout: correct, only more RSS" >&2
    cargo rustc --release --locked --no-default-features --bin warden -- -C relocation-model=static
fi
mkdir -p "$(dirname "$out")"
if [ "$out" != target/release/warden ]; then
    cp target/release/warden "$out"
fi
