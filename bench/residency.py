#!/usr/bin/env python3
"""Which of a running warden's code is resident, by crate: a memory profile of the binary.

    bench/residency.py PID [SYMBOLS_BINARY]

Reads /proc/PID/maps and /proc/PID/pagemap (root: the present bit needs CAP_SYS_ADMIN on some
kernels) for every mapping of PID's executable, and attributes each resident page to the crate
of the symbols that cover it, using `nm` on SYMBOLS_BINARY: an unstripped build with the same
layout as the running one (strip changes no loaded section), e.g.

    cargo rustc --release --bin warden -- -C strip=none   # then: touch src/main.rs; cargo build --release

Prints resident KiB per section and per crate. A page shared by symbols of several crates
counts for the crate owning most of its bytes.
"""
import bisect, collections, os, re, struct, subprocess, sys

PAGE = os.sysconf("SC_PAGE_SIZE")


def exe_mappings(pid):
    exe = os.path.realpath(f"/proc/{pid}/exe")
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and os.path.realpath(parts[5]) == exe:
                start, end = (int(x, 16) for x in parts[0].split("-"))
                out.append((start, end, int(parts[2], 16), parts[1]))
    return out


def resident_offsets(pid, mappings):
    """File offsets of the resident pages of the executable's mappings."""
    res = []
    with open(f"/proc/{pid}/pagemap", "rb") as pm:
        for start, end, off, _perms in mappings:
            n = (end - start) // PAGE
            pm.seek(start // PAGE * 8)
            data = pm.read(n * 8)
            for i in range(n):
                (entry,) = struct.unpack_from("<Q", data, i * 8)
                if entry >> 63 & 1:
                    res.append(off + i * PAGE)
    return res


def sections(binary):
    """(name, file offset, size) of the allocated sections."""
    out = []
    text = subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True).stdout
    for m in re.finditer(r"\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+\S+\s+(\S*A\S*)", text):
        out.append((m.group(1), int(m.group(3), 16), int(m.group(4), 16), int(m.group(2), 16)))
    return out


def crate_of(name):
    # `<impl Trait for crate::Type>::f`, `<crate::Type as Trait>::f`, `crate::m::f`
    m = re.search(r"[A-Za-z_][A-Za-z0-9_]*(?=::)", name)
    return m.group(0) if m else name.split()[0][:30]


def symbols(binary, secs):
    """Sorted (file offset, size, crate) of the defined function/object symbols."""
    text = subprocess.run(["nm", "-C", "-S", "--defined-only", binary], capture_output=True, text=True).stdout
    out = []
    for line in text.splitlines():
        m = re.match(r"([0-9a-f]+) ([0-9a-f]+) \S (.*)", line)
        if not m:
            continue  # a symbol without a size
        addr, size, name = int(m.group(1), 16), int(m.group(2), 16), m.group(3)
        for _n, off, sz, vaddr in secs:
            if vaddr <= addr < vaddr + sz:
                out.append((addr - vaddr + off, size, crate_of(name)))
                break
    out.sort()
    return out


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    pid = int(sys.argv[1])
    binary = sys.argv[2] if len(sys.argv) > 2 else f"/proc/{pid}/exe"
    maps = exe_mappings(pid)
    res = resident_offsets(pid, maps)
    secs = sections(binary)
    syms = symbols(binary, secs)
    starts = [s[0] for s in syms]
    by_section = collections.Counter()
    by_crate = collections.Counter()
    for page in res:
        for name, off, sz, _v in secs:
            if off <= page < off + sz or (page <= off < page + PAGE):
                by_section[name] += PAGE // 1024
                break
        # Bytes of this page per crate.
        share = collections.Counter()
        i = max(0, bisect.bisect_right(starts, page) - 1)
        while i < len(syms) and syms[i][0] < page + PAGE:
            s_off, s_size, crate = syms[i]
            lo, hi = max(s_off, page), min(s_off + s_size, page + PAGE)
            if hi > lo:
                share[crate] += hi - lo
            i += 1
        if share:
            by_crate[share.most_common(1)[0][0]] += PAGE // 1024
    total = len(res) * PAGE // 1024
    print(f"resident pages of the executable: {total} KiB")
    print("by section (KiB):")
    for name, kib in by_section.most_common():
        size = next(sz for n, _o, sz, _v in secs if n == name) // 1024
        print(f"  {kib:6d} of {size:6d}  {name}")
    print("code and data by crate (KiB, pages attributed to the crate owning most of their bytes):")
    for crate, kib in by_crate.most_common(25):
        print(f"  {kib:6d}  {crate}")


if __name__ == "__main__":
    main()
