"""The table ``python -m bench.load`` prints: one column per backend."""

from __future__ import annotations

from bench.common import BackendTable

P99_TARGET_MS = 100.0
ENDPOINTS = ("next", "submit", "logout", "login")


def table(results: dict[str, dict]) -> str:
    """One table: a column per backend."""
    t = BackendTable(results)
    add = t.add

    yn = {True: "yes", False: "NO"}.get
    add("labelers / leavers / k", lambda r: "{labelers} / {leavers} / {k}".format(**r["config"]))
    add("items / submissions asked", lambda r: f"{r['items']} / {r['config']['submissions']}")
    add("labels acknowledged", lambda r: r["acknowledged"])
    add("labeling seconds", lambda r: f"{r['seconds']:.1f}")
    add("labels/s", lambda r: f"{r['labels_per_s']:.1f}")
    for ep in ENDPOINTS:
        add(f"{ep}: calls", lambda r, ep=ep: r["endpoints"][ep]["count"])
        for q in ("p50", "p99", "max"):
            add(f"{ep}: {q} ms", lambda r, ep=ep, q=q: f"{r['endpoints'][ep][f'{q}_ms']:.1f}")
    add(f"p99 < {P99_TARGET_MS:.0f} ms (next, submit, logout)", lambda r: yn(all(
        r["endpoints"][ep]["p99_ms"] < P99_TARGET_MS for ep in ENDPOINTS[:3]
        if r["endpoints"][ep]["count"])))
    add("HTTP statuses", lambda r: " ".join(f"{k.replace(' ', ':')}={n}"
                                            for k, n in r["statuses"].items()))
    add("5xx (target 0)", lambda r: r["http_5xx"])
    add("not saved (200 + reason)", lambda r: sum(r["not_saved"].values()))
    add("'database is locked': users / logs", lambda r: f"{r['locked_seen_by_users']} / "
                                                        f"{r['locked_in_logs']}")
    add("client CPU (share of a core)", lambda r: f"{r['cpu']['client_core_share']:.2f}")
    add("server CPU (share of a core)", lambda r: f"{r['cpu']['server_core_share']:.2f}")
    add("judge workers CPU (share of a core)",
        lambda r: f"{r['cpu']['workers_core_share']:.2f}")
    add("machine load average (1 min)", lambda r: f"{r['cpu']['loadavg_1m_after']:.1f}")
    add("judge: runs / calls / seconds", lambda r: f"{len(r['judge_runs'])} / "
                                                   f"{r['judge_calls']} / {r['judge_seconds']:.0f}")
    add("judge: seconds to start a run (POST)",
        lambda r: " ".join(f"{s:.1f}" for s in r["judge_run_start_s"]))
    add("judge: still running when labels done", lambda r: r["judge_running_when_labeling_ended"])
    for name in ("acked_stored_exactly_once", "no_label_without_ack", "no_item_over_k",
                 "no_labeler_twice_on_an_item", "leavers_left_holding_a_lease",
                 "no_lease_held_by_a_leaver", "judge_runs_succeeded",
                 "one_ai_label_per_item_per_run"):
        add(f"check: {name.replace('_', ' ')}", lambda r, n=name: yn(r["invariants"][n]))
    add("server log: tracebacks / 5xx", lambda r: f"{r['logs']['server.log']['traceback']} / "
                                                  f"{r['logs']['server.log']['http_5xx']}")
    return t.render()
