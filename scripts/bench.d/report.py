#!/usr/bin/python3
"""The targets, the table and the chart of scripts/bench, made from its JSON.

  report.py BENCH_JSON [--docs docs/benchmarks.md] [--png docs/benchmarks.png]

prints the table; with --docs it replaces the part of that file between the
`<!-- bench:begin -->` and `<!-- bench:end -->` lines with the machine, the commit and the
table, and with --png it draws the ratios with gnuplot. scripts/bench --update-docs runs it
on the JSON of the run it just made.

The targets are issue 11's, and issue 12's for the shared index rows (docs/benchmarks.md
says how that one was derived): each is checked on the row's median (ratio or value), and
the row says met / not met; rows the issues set no target for say so.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

MIB = 1 << 20
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
FORMAT_NAMES = {"gzip": "gzip", "estargz": "eStargz", "zstdchunked": "zstd:chunked"}
LAZY = ("estargz", "zstdchunked")
# gzip mounted lazily with the layer indexes another host published (issue 12): found through
# referrers, or bound by the image index of `imgfs index convert`.
SHARED_INDEX_ROWS = ("cold first file, shared index", "cold first file, index convert")


def check_target(row):
    """{"text", "met"} for a row the issue sets a target for, else None."""
    name, net, fmt, metric = row["row"], row["network"], row["format"], row["metric"]
    ratio, value = row["ratio"], row["imgfs"]

    def target(text, ok):
        return {"text": text, "met": bool(ok) if ok is not None else False}

    if name == "cold first file" and net == "wan" and fmt in LAZY:
        if metric == "time":
            return target(">= 50x faster (ratio <= 0.02)", ratio is not None and ratio <= 0.02)
        return target("<= 1% of the bytes", ratio is not None and ratio <= 0.01)
    if name in SHARED_INDEX_ROWS and net == "wan":
        if metric == "time":
            return target(">= 10x faster (ratio <= 0.1)", ratio is not None and ratio <= 0.1)
        return target("<= 5% of the bytes", ratio is not None and ratio <= 0.05)
    if name == "cold whole image, --prefetch all" and net == "wan" and fmt in LAZY:
        return target("<= 0.8x", ratio is not None and ratio <= 0.8
                      and not row["detail"].get("timed_out"))
    if name == "daemon peak RSS":
        return target("<= 100 MiB", value is not None and value <= 100 * 1024)
    if name == "warm remount + first file":
        requests = max(row["detail"].get("registry_requests") or [0])
        return target("< 50 ms, no registry request",
                      value is not None and value < 0.05 and requests == 0)
    if name.startswith("sequential read, store") and "random" in name:
        return target(">= 0.8x local disk", ratio is not None and ratio >= 0.8)
    if name.startswith("sequential read, store") and name.endswith("vs zcat"):
        return target(">= 0.9x zcat", ratio is not None and ratio >= 0.9)
    if name.startswith("sequential read, page cache"):
        return target(">= 0.9x native", ratio is not None and ratio >= 0.9)
    if name == "metadata walk":
        return target("<= 1.5x", ratio is not None and ratio <= 1.5)
    return None


def value(v, unit):
    if v is None:
        return "n/a"
    if unit == "s":
        return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"
    if unit == "B":
        return f"{v / MIB:.2f} MiB" if v < 10 * MIB else f"{v / MIB:.1f} MiB"
    if unit == "KiB":
        return f"{v / 1024:.0f} MiB"
    if unit == "MiB/s":
        return f"{v:.0f} MiB/s"
    if unit == "1/s":
        return f"{v:.0f}/s"
    return str(v)


def ratio_text(r):
    if r["ratio"] is None:
        return "n/a", ""
    return f"{r['ratio']:.3f}", f"{r['ratio_min']:.3f}–{r['ratio_max']:.3f}"


def target_text(r):
    t = r.get("target")
    if not t:
        return "(no target)"
    return f"{'met' if t['met'] else 'NOT met'}: {t['text']}"


def cells(r):
    imgfs = value(r["imgfs"], r["unit"])
    if r["detail"].get("timed_out"):
        imgfs = "> " + imgfs + " (timed out)"
    ratio, span = ratio_text(r)
    better = "↓" if r["better"] == "lower" else "↑"
    return [r["row"], r["network"], FORMAT_NAMES[r["format"]], r["metric"] + " " + better,
            imgfs, value(r["alternative"], r["unit"]), ratio, span, target_text(r)]


HEADER = ["row", "network", "format", "metric", "imgfs", "alternative", "ratio",
          "min–max", "target"]


def text_table(doc):
    rows = [HEADER] + [cells(r) for r in doc["results"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    out = []
    for n, row in enumerate(rows):
        out.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    for note in doc.get("notes", []):
        out.append(f"note: {note}")
    out.append(summary(doc))
    return "\n".join(out)


def summary(doc):
    m = doc["machine"]
    targets = [r["target"] for r in doc["results"] if r.get("target")]
    met = sum(1 for t in targets if t["met"])
    return (f"{met} of {len(targets)} targets met. machine: {m.get('cpus')} CPUs "
            f"({m.get('cpu', '?')}), load {m['loadavg_1m']:.2f} at start, "
            f"{m.get('loadavg_1m_end', 0):.2f} at end; ratio = imgfs / alternative in the "
            f"metric's unit (↓: lower is better, ↑: higher is better); {doc['repeat']} "
            f"repetitions, ratio = median of the per-repetition ratios")


def markdown(doc):
    m, img = doc["machine"], doc["image"]
    layers = img["layers"]
    lines = [BEGIN, "",
             f"Run of {m.get('date', '?')}: imgfs at {m.get('code_commit') or m.get('source_commit', '?')} (binary "
             f"built {m.get('imgfs_binary_mtime', '?')}), {m.get('cpus')} CPUs "
             f"({m.get('cpu', '?')}), {m.get('memory_kib', 0) / 1024 / 1024:.0f} GiB RAM, "
             f"Linux {m.get('kernel', '?')}; {m.get('skopeo', '')}, "
             f"{m.get('umoci', '').replace(chr(10), ' ')}. Load average "
             f"{m['loadavg_1m']:.1f} at the start, {m.get('loadavg_1m_end', 0):.1f} at the end. "
             f"{doc['repeat']} repetitions; the whole run took "
             f"{doc['duration_s'] / 60:.1f} min.", "",
             f"Image `{img['kind']}` ({img['version']}): {img.get('description', '')}; "
             f"{img.get('files', '?')} files, {img.get('content_bytes', 0) / MIB:.0f} MiB of "
             "content; compressed layers "
             + ", ".join(f"{FORMAT_NAMES[f]} {sum(x['size'] for x in layers[f]) / MIB:.1f} MiB"
                         for f in layers)
             + f". WAN: {doc['wan']['rtt_ms']:g} ms round trip, {doc['wan']['mbit']:g} "
             "Mbit/s shared.", "",
             "| " + " | ".join(HEADER) + " |",
             "|" + "---|" * len(HEADER)]
    for r in doc["results"]:
        c = cells(r)
        c[-1] = c[-1].replace("NOT met", "**not met**")
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in c) + " |")
    lines.append("")
    for note in doc.get("notes", []):
        lines.append(f"- {note}")
    lines += ["", summary(doc), "", "![ratios](benchmarks.png)", "", END]
    return "\n".join(lines)


def update_docs(doc, path):
    with open(path) as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} section to replace")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w") as f:
        f.write(head + markdown(doc) + tail)


def chart(doc, png):
    """Ratios on a log axis, one line per row, min–max as error bars, the target as a mark."""
    rows = [r for r in doc["results"] if r["ratio"] is not None]
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "rows.dat")
        with open(data, "w") as f:
            for n, r in enumerate(reversed(rows)):
                t = r.get("target")
                state = 2 if not t else (0 if t["met"] else 1)
                metric = "" if r["metric"] in ("time", "throughput", "peak RSS", "reads/s") \
                    else f" ({r['metric']})"
                label = (f"{r['row'].replace('sequential read', 'seq')}{metric} "
                         f"{'↓' if r['better'] == 'lower' else '↑'} · "
                         f"{FORMAT_NAMES[r['format']]} · {r['network']}")
                f.write(f"{n} {r['ratio']:.6g} {r['ratio_min']:.6g} {r['ratio_max']:.6g} "
                        f"{state} \"{label}\"\n")
        height = 140 + 18 * len(rows)
        script = f"""
set terminal pngcairo size 1100,{height} font "DejaVu Sans,9"
set output "{png}"
set logscale x 10
set xrange [0.0005:20]
set yrange [-1:{len(rows)}]
set grid xtics
set xlabel "imgfs / alternative (log scale; ↓ rows: lower is better, ↑ rows: higher is better)"
set title "scripts/bench: {doc['image']['kind']} image, imgfs at {doc['machine'].get('code_commit') or doc['machine'].get('source_commit', '?')}, {doc['repeat']} repetitions (median, min–max)"
set arrow from 1,-1 to 1,{len(rows)} nohead lc rgb "black" dt 2
set key outside top center horizontal
set ytics () scale 0
set lmargin 62
plot "{data}" using 2:1:3:4:ytic(6) with xerrorbars lc rgb "#999999" pt 7 ps 0 notitle, \\
     "" using ($5==0?$2:1/0):1 with points pt 7 ps 1.2 lc rgb "#1a9641" title "target met", \\
     "" using ($5==1?$2:1/0):1 with points pt 7 ps 1.2 lc rgb "#d7191c" title "target not met", \\
     "" using ($5==2?$2:1/0):1 with points pt 6 ps 1.2 lc rgb "#2b83ba" title "no target"
"""
        gp = os.path.join(tmp, "chart.gp")
        with open(gp, "w") as f:
            f.write(script)
        subprocess.run(["gnuplot", gp], check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json")
    parser.add_argument("--docs")
    parser.add_argument("--png")
    args = parser.parse_args()
    with open(args.json) as f:
        doc = json.load(f)
    for r in doc["results"]:
        r["target"] = check_target(r)
    print(text_table(doc))
    if args.docs:
        update_docs(doc, args.docs)
        print(f"updated {args.docs}")
    if args.png:
        chart(doc, args.png)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
