#!/usr/bin/env python3
"""Sums an `ncu --csv --page raw` log (tests/cuda/run.sh profile) by kernel, per profiled range:
the first range is one decode step, the second a 512-token prefill (lmcuda profile). Prints, per
range, each kernel's launches, total microseconds, share of the range, DRAM bytes and the mean
DRAM throughput in percent of peak; and the range's total."""
import csv
import re
import sys


def rows(path):
    lines = [l for l in open(path, errors="replace") if l.startswith('"')]
    rd = csv.reader(lines)
    head = next(rd, None)
    if not head:
        return []
    out = []
    for r in rd:
        if len(r) != len(head) or r[0] == "ID" or not r[0].strip('"').isdigit():
            continue
        out.append(dict(zip(head, r)))
    return out


def num(s):
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return 0.0


def short(name):
    name = re.sub(r"\(.*", "", name)
    return name[:60]


def main():
    rs = rows(sys.argv[1])
    if not rs:
        print("ncu_summary: no kernel rows in", sys.argv[1])
        return 1
    # the decode step is a run of small launches; the prefill starts at the second embed kernel
    starts = [i for i, r in enumerate(rs) if "k_embed" in r.get("Kernel Name", "")]
    ranges = [("decode step", rs[: starts[1]] if len(starts) > 1 else rs)]
    if len(starts) > 1:
        ranges.append(("prefill 512", rs[starts[1]:]))
    for title, part in ranges:
        agg = {}
        total = 0.0
        for r in part:
            k = short(r["Kernel Name"])
            t = num(r.get("gpu__time_duration.sum", "0"))  # ns
            b = num(r.get("dram__bytes_read.sum", "0")) + num(r.get("dram__bytes_write.sum", "0"))
            p = num(r.get("dram__throughput.avg.pct_of_peak_sustained_elapsed", "0"))
            a = agg.setdefault(k, [0, 0.0, 0.0, 0.0])
            a[0] += 1
            a[1] += t
            a[2] += b
            a[3] += p * t
            total += t
        print(f"{title}: {len(part)} kernels, {total / 1e3:.1f} us of kernel time")
        for k, (n, t, b, pt) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
            print(f"  {k:60s} {n:4d} x {t / 1e3 / n:8.2f} us = {t / 1e3:9.1f} us ({100 * t / total:5.1f} %)"
                  f"  {b / 1e6:9.2f} MB  DRAM {pt / t if t else 0:5.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
