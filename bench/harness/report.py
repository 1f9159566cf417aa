"""Turns the per-run rows into medians, the CSV files, bench/results/latest.md and the chart."""

import csv
import os
import statistics
import subprocess

from .workloads import GOALS

RUN_FIELDS = [
    "workload", "target", "rep", "clients", "duration_s", "tps", "txns", "failed", "aborted",
    "lat_avg_ms", "lat_p50_ms", "lat_p99_ms", "lat_max_ms", "conn_ms", "pooler_cpu_s",
    "cpu_us_per_txn", "pooler_rss_peak_kb", "pooler_rss_end_kb", "client_cpu_us_per_txn",
    "postgres_cpu_us_per_txn", "system_busy_pct", "foreign_cpu_pct", "quiet_wait_s", "wall_s",
    "idle_rss_before_kb", "idle_rss_after_kb",
    "idle_bytes_per_client", "idle_connect_s", "idle_connects_per_s", "idle_handshake_p50_ms",
    "idle_handshake_p99_ms", "idle_cpu_us_per_connect", "idle_tool_cpu_us_per_connect", "attempts",
    "error",
]

MEDIAN_FIELDS = [
    "tps", "lat_avg_ms", "lat_p50_ms", "lat_p99_ms", "cpu_us_per_txn", "pooler_rss_peak_kb",
    "client_cpu_us_per_txn", "postgres_cpu_us_per_txn", "system_busy_pct", "foreign_cpu_pct",
    "idle_bytes_per_client", "idle_connect_s",
    "idle_connects_per_s", "idle_handshake_p50_ms", "idle_handshake_p99_ms",
    "idle_cpu_us_per_connect", "idle_tool_cpu_us_per_connect",
]
SUM_FIELDS = ["failed", "aborted"]


def write_runs_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=RUN_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt_csv(r.get(k)) for k in RUN_FIELDS})


def _fmt_csv(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else v


def summarize(rows):
    """{(workload, target): {metric: median or total, 'reps': n, 'errors': [...]}}"""
    groups = {}
    for r in rows:
        groups.setdefault((r["workload"], r["target"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        s = {"reps": len(rs), "errors": [r["error"] for r in rs if r.get("error")]}
        for f in MEDIAN_FIELDS:
            vals = [r[f] for r in rs if r.get(f) is not None]
            s[f] = statistics.median(vals) if vals else None
        for f in SUM_FIELDS:
            vals = [r[f] for r in rs if r.get(f) is not None]
            s[f] = sum(vals) if vals else None
        tps = [r["tps"] for r in rs if r.get("tps")]
        s["tps_spread_pct"] = (100.0 * (max(tps) - min(tps)) / statistics.median(tps)
                               if len(tps) > 1 else None)
        out[key] = s
    return out


def ratio(summary, workload, metric, a, b):
    x = summary.get((workload, a), {}).get(metric)
    y = summary.get((workload, b), {}).get(metric)
    if x is None or not y:
        return None
    return x / y


def pair_ratios(rows, workload, metric, a, b):
    """Rep-by-rep ratios a/b of one metric: runs with the same rep number ran back to back
    (interleaved), so each pair saw the same machine and the pairs show how much a median ratio
    can be trusted."""
    by_rep = {}
    for r in rows:
        if r.get("workload") == workload and r.get(metric) is not None:
            by_rep.setdefault(r.get("rep"), {})[r.get("target")] = r[metric]
    return [p[a] / p[b] for _, p in sorted(by_rep.items(), key=lambda kv: str(kv[0]))
            if a in p and b in p and p[b]]


def describe_pairs(goal, ratios):
    """The pairs' range and how many of them meet the goal, e.g. '1.03–1.10×, 2 of 5 pairs
    meet it'; empty with fewer than two pairs."""
    if len(ratios) < 2:
        return ""
    meeting = sum(1 for r in ratios if goal.check(r))
    low = goal.shown(min(ratios), name_versus=False).rstrip("×")
    high = goal.shown(max(ratios), name_versus=False)
    return f"{low}–{high}, {meeting} of {len(ratios)} pairs meet it"


def goal_pairs(rows, goal):
    """describe_pairs for one goal's Shardyard/versus pairs; empty for an absolute goal."""
    if not goal.versus:
        return ""
    return describe_pairs(goal, pair_ratios(rows, goal.workload, goal.metric, "shardyard",
                                            goal.versus))


def evaluate_goals(summary, workload_names):
    results = []
    for g in GOALS:
        if g.workload not in workload_names:
            continue
        if g.versus:
            value = ratio(summary, g.workload, g.metric, "shardyard", g.versus)
        else:
            value = summary.get((g.workload, "shardyard"), {}).get(g.metric)
        results.append((g, value, None if value is None else g.check(value)))
    return results


def write_summary_csv(path, summary, workloads, targets):
    fields = ["workload", "target", "reps"] + MEDIAN_FIELDS + SUM_FIELDS + [
        "tps_spread_pct", "tps_vs_pgbouncer", "tps_vs_direct"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for wl in workloads:
            for t in targets:
                s = summary.get((wl.name, t))
                if s is None:
                    continue
                row = {"workload": wl.name, "target": t}
                row.update({k: _fmt_csv(s.get(k)) for k in fields if k in s})
                row["tps_vs_pgbouncer"] = _fmt_csv(ratio(summary, wl.name, "tps", t, "pgbouncer"))
                row["tps_vs_direct"] = _fmt_csv(ratio(summary, wl.name, "tps", t, "direct"))
                w.writerow(row)


def _n(v, digits=0, scale=1.0):
    if v is None:
        return "—"
    v = v * scale
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def _r(v):
    return "—" if v is None else f"{v:.2f}×"


PGBENCH_METRICS = [
    ("TPS (median)", "tps", 0, 1.0),
    ("latency p50, ms", "lat_p50_ms", 3, 1.0),
    ("latency p99, ms", "lat_p99_ms", 3, 1.0),
    ("latency avg, ms (pgbench)", "lat_avg_ms", 3, 1.0),
    ("failed transactions (all reps)", "failed", 0, 1.0),
    ("aborted clients (all reps)", "aborted", 0, 1.0),
    ("pooler CPU, µs per transaction", "cpu_us_per_txn", 1, 1.0),
    ("pooler CPU, s per 10,000 transactions", "cpu_us_per_txn", 3, 0.01),
    ("pooler peak RSS, MB", "pooler_rss_peak_kb", 1, 1 / 1024),
    ("pgbench CPU, µs per transaction", "client_cpu_us_per_txn", 1, 1.0),
    ("PostgreSQL CPU, µs per transaction", "postgres_cpu_us_per_txn", 1, 1.0),
    ("machine CPU busy, %", "system_busy_pct", 0, 1.0),
    ("CPU used by other processes, % of machine", "foreign_cpu_pct", 1, 1.0),
    ("TPS spread across reps, %", "tps_spread_pct", 1, 1.0),
]

IDLE_METRICS = [
    ("RSS per idle client, bytes", "idle_bytes_per_client", 0, 1.0),
    ("time to connect all, s", "idle_connect_s", 2, 1.0),
    ("logins per second", "idle_connects_per_s", 0, 1.0),
    ("login p50, ms", "idle_handshake_p50_ms", 2, 1.0),
    ("login p99, ms", "idle_handshake_p99_ms", 2, 1.0),
    ("pooler CPU per login, µs", "idle_cpu_us_per_connect", 1, 1.0),
    ("load tool CPU per login, µs", "idle_tool_cpu_us_per_connect", 1, 1.0),
    ("pooler peak RSS, MB", "pooler_rss_peak_kb", 1, 1 / 1024),
    ("failed or dropped connections", "failed", 0, 1.0),
    ("CPU used by other processes, % of machine", "foreign_cpu_pct", 1, 1.0),
]

LOWER_IS_BETTER = {"lat_p50_ms", "lat_p99_ms", "lat_avg_ms", "cpu_us_per_txn",
                   "pooler_rss_peak_kb", "idle_bytes_per_client", "idle_connect_s",
                   "idle_handshake_p50_ms", "idle_handshake_p99_ms", "idle_cpu_us_per_connect",
                   "idle_tool_cpu_us_per_connect"}


def write_markdown(path, *, meta, summary, workloads, targets, labels, chart_name, rows=()):
    lines = []
    add = lines.append
    add("# Shardyard benchmark results")
    add("")
    add(f"Produced by `bench/run {meta['argv']}` on {meta['date']}; "
        "see docs/benchmarks.md for the method.")
    add("")
    add("| | |")
    add("| --- | --- |")
    for k in ("machine", "kernel", "postgres", "pgbouncer", "shardyard", "pgbench",
              "settings"):
        add(f"| {k} | {meta.get(k, '')} |")
    add("")
    add("Medians over the repetitions; targets run interleaved (direct, PgBouncer, Shardyard, "
        "direct, …), each pooler started fresh for each run and warmed up before it is measured. "
        "Ratios are Shardyard's median divided by the other's.")
    add("")
    goal_rows = evaluate_goals(summary, {w.name for w in workloads})
    if goal_rows:
        add("## Targets from issue 3")
        add("")
        add("| workload | target | Shardyard (medians) | met? | run by run |")
        add("| --- | --- | --- | --- | --- |")
        for g, value, ok in goal_rows:
            if value is None:
                shown, verdict = "—", "not measured"
            else:
                shown, verdict = g.shown(value), "**met**" if ok else "**missed**"
            add(f"| {g.workload} | {g.text} | {shown} | {verdict} | {goal_pairs(rows, g)} |")
        add("")
    if chart_name:
        add(f"![TPS, p99 latency, pooler CPU and memory per workload]({chart_name})")
        add("")
    for wl in workloads:
        present = [t for t in targets if (wl.name, t) in summary]
        if not present:
            continue
        add(f"## {wl.name}: {wl.title}")
        add("")
        header = "| metric | " + " | ".join(labels[t] for t in present)
        sep = "| --- | " + " | ".join("---:" for _ in present)
        ratios = []
        if "shardyard" in present and "pgbouncer" in present:
            ratios.append("pgbouncer")
        if "shardyard" in present and "direct" in present:
            ratios.append("direct")
        for r in ratios:
            header += f" | Shardyard / {labels[r]}"
            sep += " | ---:"
        add(header + " |")
        add(sep + " |")
        metrics = IDLE_METRICS if wl.kind == "idle" else PGBENCH_METRICS
        for title, key, digits, scale in metrics:
            cells = []
            for t in present:
                v = summary[(wl.name, t)].get(key)
                if key in ("cpu_us_per_txn", "pooler_rss_peak_kb") and t == "direct":
                    v = None
                cells.append(_n(v, digits, scale))
            line = f"| {title} | " + " | ".join(cells)
            for r in ratios:
                if key in ("failed", "aborted", "tps_spread_pct", "system_busy_pct",
                           "client_cpu_us_per_txn", "postgres_cpu_us_per_txn",
                           "foreign_cpu_pct") or (
                               r == "direct" and key in ("cpu_us_per_txn", "pooler_rss_peak_kb")):
                    line += " | "
                else:
                    line += f" | {_r(ratio(summary, wl.name, key, 'shardyard', r))}"
            add(line + " |")
        reps = max(summary[(wl.name, t)]["reps"] for t in present)
        add("")
        add(f"{reps} repetition(s) per target.")
        errs = [(t, e) for t in present for e in summary[(wl.name, t)]["errors"]]
        for t, e in errs[:6]:
            add(f"- {labels[t]}: {e}")
        add("")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def write_chart(out_dir, png_name, summary, workloads, targets, labels):
    """A PNG of up to 2×2 panels: TPS, p99 latency, pooler CPU per transaction, memory."""
    pg = [w for w in workloads if w.kind == "pgbench"]
    idle = [w for w in workloads if w.kind == "idle"]
    data = os.path.join(out_dir, "chart.dat")

    def val(w, t, k, scale=1.0):
        v = summary.get((w, t), {}).get(k)
        return "?" if v is None else f"{v * scale:.6g}"

    # One data block per panel; a panel with no measured value at all (no idle workload, or
    # only direct PostgreSQL measured) is left out, since gnuplot refuses to plot it.
    blocks = [("Throughput, transactions/s (log scale)", True,
               [(w.name, [val(w.name, t, "tps") for t in targets]) for w in pg]),
              ("Latency p99, ms (log scale)", True,
               [(w.name, [val(w.name, t, "lat_p99_ms") for t in targets]) for w in pg]),
              ("Pooler CPU per transaction, µs", False,
               [(w.name, [val(w.name, t, "cpu_us_per_txn") for t in targets]) for w in pg]),
              ("RSS per idle client, bytes", False,
               [(w.name, [val(w.name, t, "idle_bytes_per_client") for t in targets])
                for w in idle])]
    blocks = [b for b in blocks if any(v != "?" for _, row in b[2] for v in row)]
    if not blocks:
        return "nothing to chart: no workload has a measured value"
    with open(data, "w", encoding="utf-8") as f:
        f.write("# workload " + " ".join(targets) + "  (one block per panel)\n")
        for _, _, block_rows in blocks:
            for name, row in block_rows:
                f.write(name + " " + " ".join(row) + "\n")
            f.write("\n\n")
    colors = {"direct": "#7f7f7f", "pgbouncer": "#1f77b4", "shardyard": "#d62728"}
    cols = []
    for i, t in enumerate(targets):
        color = colors.get(t, "#2ca02c")
        spec = f"'' index IDX using {i + 2}:xtic(1) title '{labels[t]}' lc rgb '{color}'"
        cols.append(spec)
    plot = ", ".join(cols)
    panels = ""
    for index, (title, log_y, _) in enumerate(blocks):
        panels += f"set title '{title}'\n"
        panels += "set logscale y\nset yrange [*:*]\n" if log_y else "unset logscale y\n" \
            "set yrange [0:*]\n"
        first_file = plot.replace("IDX", str(index)).replace("''", "", 1)
        panels += f"plot '{data}' {first_file}\n"
    layout_rows, cols_n = (1, len(blocks)) if len(blocks) < 4 else (2, 2)
    heading = " vs ".join(labels[t] for t in reversed(targets)) + " (medians)"
    script = f"""
set terminal pngcairo size {700 * cols_n},{500 * layout_rows} font ',10'
set output '{os.path.join(out_dir, png_name)}'
set datafile missing '?'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key outside top center horizontal
set xtics rotate by -25
set multiplot layout {layout_rows},{cols_n} title '{heading}'
{panels}unset multiplot
"""
    gp = os.path.join(out_dir, "chart.gp")
    with open(gp, "w", encoding="utf-8") as f:
        f.write(script)
    try:
        subprocess.run(["gnuplot", gp], check=True, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        return f"gnuplot failed: {detail.strip()[:300]}"
    finally:
        for p in (data, gp):
            if os.path.exists(p):
                os.remove(p)
    return None
