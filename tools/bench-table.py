#!/usr/bin/env python3
"""Markdown tables from tools/vm-bench.sh's results (bench.csv, counts.csv, memory.csv, tools-suite.csv in DIR),
and DIR/plot.dat
for tools/bench-plot.gp.   tools/bench-table.py DIR > DIR/table.md"""
import csv
import sys
from pathlib import Path

TARGETS = [("kernel-rm", "kernel RM /dev/tpmrm0"), ("tpm0", "bare /dev/tpm0"), ("tpmrmd", "tpmrmd"),
           ("abrmd", "tpm2-abrmd"), ("socket", "tpmrmd socket (swtpm:)"), ("floor", "CUSE floor")]


def rows(path):
    return list(csv.DictReader(path.open())) if path.exists() else []


def cell(r):
    if r is None:
        return "—"
    if r["status"] != "ok":
        return f"fails ({r['status']})"
    return f"{float(r['ops_per_s']):.0f} ({float(r['p50_ms']):.2f} / {float(r['p99_ms']):.2f})"


def ratio(a, b):
    if a is None or b is None or a["status"] != "ok" or b["status"] != "ok" or float(b["ops_per_s"]) == 0:
        return "—"
    return f"{float(a['ops_per_s']) / float(b['ops_per_s']):.2f}"


def main(out):
    bench = rows(out / "bench.csv")
    workloads = list(dict.fromkeys(r["workload"] for r in bench))
    by = {(r["target"], r["workload"]): r for r in bench}
    present = [(t, name) for t, name in TARGETS if any(r["target"] == t for r in bench)]

    print("ops/s (p50 / p99 latency, ms); the best of the rounds\n")
    print("| workload | " + " | ".join(name for _, name in present) + " |")
    print("|---" * (len(present) + 1) + "|")
    for w in workloads:
        print(f"| {w} | " + " | ".join(cell(by.get((t, w))) for t, _ in present) + " |")

    print("\nRatios of throughput, and tpmrmd's TPM commands per client command (client + load + save + flush)\n")
    print("| workload | tpmrmd / kernel RM | tpmrmd / bare | tpmrmd / abrmd | tpmrmd / floor | TPM cmds per cmd "
          "(load, save, flush) |")
    print("|---|---|---|---|---|---|")
    for w in workloads:
        m = by.get(("tpmrmd", w))
        per = "—"
        if m and m["tpm_per_op"]:
            per = f"{float(m['tpm_per_op']):.2f} ({float(m['load_per_op']):.2f}, {float(m['save_per_op']):.2f}, " \
                  f"{float(m['flush_per_op']):.2f})"
        print(f"| {w} | {ratio(m, by.get(('kernel-rm', w)))} | {ratio(m, by.get(('tpm0', w)))} | "
              f"{ratio(m, by.get(('abrmd', w)))} | {ratio(m, by.get(('floor', w)))} | {per} |")

    multi = [r for r in bench if r["workload"] == "16clients" and r["status"] == "ok"]
    if multi:
        print("\n16 clients: per-client ops/s, slowest / fastest\n")
        print("| target | slowest | fastest |")
        print("|---|---|---|")
        for r in multi:
            print(f"| {r['target']} | {float(r['client_min_ops_per_s']):.1f} | {float(r['client_max_ops_per_s']):.1f} |")

    counts = rows(out / "counts.csv")
    if counts:
        print("\nPer GetRandom, in the daemon (strace -f; context switches from /proc without strace)\n")
        print("| daemon | syscalls | FUSE requests | writes to the TPM | context switches | by syscall |")
        print("|---|---|---|---|---|---|")
        for r in counts:
            print(f"| {r['target']} | {r['syscalls_per_cmd']} | {r['fuse_requests_per_cmd']} | "
                  f"{r['tpm_writes_per_cmd']} | {r['ctxt_switches_per_cmd']} | {r['by_syscall'].strip()} |")

    memory = rows(out / "memory.csv")
    if memory:
        print("\nIdle connections: the daemon's RSS\n")
        print("| daemon | connections | RSS before (KiB) | RSS after (KiB) | per connection |")
        print("|---|---|---|---|---|")
        for r in memory:
            print(f"| {r['target']} | {r['connections']} | {r['rss_before_kib']} | {r['rss_after_kib']} | "
                  f"{int(r['bytes_per_connection']) / 1024:.1f} KiB |")

    suite = rows(out / "tools-suite.csv")
    if suite:
        targets = list(dict.fromkeys(r["target"] for r in suite))
        tests = list(dict.fromkeys(r["test"] for r in suite))
        by_test = {(r["target"], r["test"]): r for r in suite}
        print("\ntpm2-tools integration tests: wall time, s (status when not 0)\n")
        print("| test | " + " | ".join(targets) + " |")
        print("|---" * (len(targets) + 1) + "|")

        def secs(r):
            if r is None:
                return "—"
            return f"{int(r['ms']) / 1000:.1f}" + ("" if r["status"] == "0" else f" (exit {r['status']})")
        for t in tests:
            print(f"| {t} | " + " | ".join(secs(by_test.get((g, t))) for g in targets) + " |")
        total = {g: sum(int(r["ms"]) for r in suite if r["target"] == g) / 1000 for g in targets}
        print("| **total** | " + " | ".join(f"**{total[g]:.1f}**" for g in targets) + " |")
        if "kernel-rm" in total and total["kernel-rm"]:
            print("\n" + ", ".join(f"{g} / kernel RM: {total[g] / total['kernel-rm']:.2f}" for g in targets
                                   if g != "kernel-rm"))

    # The plot's data: one line per workload, one column per target (? where it failed or did not run).
    with (out / "plot.dat").open("w") as f:
        f.write("workload " + " ".join(f'"{name}"' for _, name in present) + "\n")
        for w in workloads:
            vals = []
            for t, _ in present:
                r = by.get((t, w))
                vals.append(r["ops_per_s"] if r and r["status"] == "ok" else "?")
            f.write(f"{w} " + " ".join(vals) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
