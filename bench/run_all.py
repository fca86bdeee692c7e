"""Run every benchmark in order and print one summary table (``make bench``).

1 + 5: rate_limit_batch, 2: naive_baseline (right after 1, same sandbox settings),
1b: rate_limit_batch again with another integration spending 5 % of every window,
3: enqueue, 4: overhead, 6: recovery after a node kill, 7: an urgent request during a
batch. Each writes its own JSON to bench/results/; this writes bench/results/summary.json
too.
"""

from __future__ import annotations

import time
from typing import Any

from bench import enqueue, naive_baseline, overhead, rate_limit_batch, recovery, urgent_lane
from bench.common import machine_info, print_table, write_result

NAIVE_TIMEOUT_S = 360.0  # keeps `make bench` under ~10 minutes even if the baseline crawls


def main() -> None:
    started = time.monotonic()
    machine = machine_info()
    ours = rate_limit_batch.run()
    naive = naive_baseline.run(timeout=NAIVE_TIMEOUT_S, compare=False)
    naive_baseline.print_comparison(ours, naive, note="(same run)")
    shared = rate_limit_batch.run(background_usage=0.05,
                                  name=f"{rate_limit_batch.NAME}_background")
    enq = enqueue.run()
    over = overhead.run()
    rec = recovery.run()
    write_result(recovery.NAME, rec)
    lane = urgent_lane.run()
    write_result(urgent_lane.NAME, lane)

    a, b, c = ours["figures"], naive["figures"], shared["figures"]
    naive_wall = b["wall_s"] if b["finished"] else f">= {b['wall_s']}"
    rows: list[list[Any]] = [
        [f"1 batch @ 20/s: wall ÷ floor (600 rows, {a['calls_needed']} calls, "
         f"{a['floor_s']:g} s)", f"{a['ratio']:.3f}x ({a['wall_s']} s)", "≤ 1.03x"],
        ["1 batch @ 20/s: 429s", a["rate_limited_429"], "0"],
        ["1 batch @ 20/s: Polar calls per row / revoked once",
         f"{a['requests_per_row']} / {a['seats_revoked_once']} of 600", "≤ 1.05 / 600"],
        ["1b same, another integration spends 5 %: 429s", c["rate_limited_429"], "≤ 1"],
        ["1b: wall ÷ floor / ÷ floor of what is left",
         f"{c['ratio']:.3f}x / {c['ratio_to_floor_left']:.3f}x ({c['wall_s']} s)", "-"],
        ["2 naive Celery: wall ÷ floor", f"{b['ratio']:.3f}x ({naive_wall} s)", "-"],
        ["2 naive Celery: 429s / DELETEs sent", f"{b['rate_limited_429']} / "
         f"{b['deletes_sent']}", "-"],
        ["3 enqueue 10,000 rows: rows/s (best of 3)",
         f"{enq['figures']['best_rows_per_s']:,.0f} ({enq['figures']['best_total_s']} s)",
         "a few seconds"],
    ]
    for row in over["figures"]:
        rows.append([f"4 no limit, 1 node c={row['concurrency']}: revocations/s vs no-op/s",
                     f"{row['revocations_per_s']} vs {row['noop_per_s']}", "-"])
    rows.append(["5 peak worker RSS during 1 (max process)",
                 f"{ours['memory']['max_peak_rss_mib']} MiB", "-"])
    r = rec["results"]
    rows.append(["6 node SIGKILLed at 30 % of 1,000 seats @ 40/s, 25 % 503s: kill → "
                 "its requests re-sent / batch wall ÷ floor",
                 f"{r['recovery: kill → last held request re-sent (s)']} s / "
                 f"{r['batch wall time, submit → last terminal (s)']} s for "
                 f"{r['floor = calls needed ÷ rate (s)']} s", "≤ 30 s / ≤ 120 s"])
    u = lane["results"]
    rows.append(["7 urgent revocation during a 600-row batch @ 20/s: median wait running "
                 "/ idle", f"{u['urgent wait, batch running: median / max (s)']} / "
                 f"{u['urgent wait, idle: median / max (s)']} s", "≤ 2 s, within 1 s"])
    print_table(["benchmark", "measured", "target"], rows,
                title=f"=== summary ({machine['date']}, nproc={machine['nproc']}, "
                      f"python {machine['python']}, redis {machine['redis_version']}, "
                      f"{time.monotonic() - started:.0f} s) ===")
    write_result("summary", {"machine": machine, "rows": rows,
                             "elapsed_s": round(time.monotonic() - started, 1)})


if __name__ == "__main__":
    main()
