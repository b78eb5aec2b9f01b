"""Replay every recorded scenario through the server's detector pipeline and score the alerts.

Usage (from the repository root; about a minute)::

    .venv/bin/python benchmarks/scenarios/evaluate.py [--dir benchmarks/scenarios/recorded]
        [--json benchmarks/scenarios/results.json] [--batch 25] [--markdown]

The pipeline is the server's: one ``stethoscope.app.runtime.DetectorRuntime`` over
``SQLiteStore(":memory:")`` with an ``AlertManager``; each run is fed in batches of ``--batch``
steps (scalars of those steps and the embedding evaluations that fall in them), as the collector
would send it (embedding evaluations inline, ``embedding_workers=0``, where the runtime has
background workers). An alert counts from its ``first_step`` (the data step at which the detector fired),
warning or critical only (the manager drops info findings).

Scoring (labels and onsets come from the recorded ground truth, see ``record.py``):

- *detection*: a bad run is detected when an alert of an expected kind fires; delay = its
  ``first_step`` minus the ground-truth onset. For blow-ups (``divergence`` and
  ``exploding_gradients`` alerts) the lead time is first non-finite step minus ``first_step``.
- *false alarms*: every alert on a healthy run; on a bad run, every alert that fired before the
  scripted fault (``fault_step``) or, without one, an alert of an unexpected kind before the onset.
- targets (PASS/MISS): T1 every collapse flagged (``mode_collapse``) within 500 steps of its
  onset; T2 every divergence flagged at the latest on its first non-finite value, and T2b most
  (> half) flagged before it; T3 every discriminator-wins and vanishing-gradient run flagged;
  T4 zero alerts on healthy runs.

The digits GAN runs are replayed twice: with the fixed classifier's features (``main``) and with
the discriminator's penultimate features (run id suffix ``@dfeat``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scenario_io import RecordedRun, load_manifest, load_run  # noqa: E402

from stethoscope.app.alerting import AlertManager  # noqa: E402
from stethoscope.app.runtime import DetectorRuntime  # noqa: E402
from stethoscope.app.storage import EmbeddingInput, SQLiteStore  # noqa: E402

HERE = Path(__file__).resolve().parent
BLOWUP_KINDS = ("divergence", "exploding_gradients")


def replay(run: RecordedRun, embedding_set: str = "main", batch: int = 25) -> list[dict[str, Any]]:
    """Feed ``run`` to a fresh server pipeline; return its alerts (one dict per alert id, with
    the first firing step, the highest severity and the first message)."""
    store = SQLiteStore(":memory:")
    # embeddings evaluated inline rather than on the server's worker: a deterministic replay
    runtime = DetectorRuntime(store, AlertManager(store), embedding_workers=0)
    name = "replay"
    store.upsert_run(name, config={}, status="running")
    emb = run.embeddings.get(embedding_set)
    alerts: dict[int, dict[str, Any]] = {}
    last = run.last_step
    for lo in range(0, last + 1, batch):
        hi = lo + batch
        scalars = {}
        for key, (steps, values) in run.scalars.items():
            a, b = np.searchsorted(steps, [lo, hi])
            if b > a:
                scalars[key] = (steps[a:b], values[a:b])
        embeddings: list[EmbeddingInput] = []
        if emb is not None:
            esteps, fake, real = emb
            for i in np.nonzero((esteps >= lo) & (esteps < hi))[0]:
                s = int(esteps[i])
                embeddings.append(EmbeddingInput(s, "fake", np.asarray(fake[i], np.float32)))
                if real is not None:
                    embeddings.append(EmbeddingInput(s, "real", np.asarray(real[i], np.float32)))
        for rec in runtime.process(name, scalars, embeddings):
            entry = alerts.get(rec.id)
            if entry is None:
                entry = alerts[rec.id] = {
                    "kind": rec.kind, "key": rec.key, "detector": rec.detector,
                    "severity": rec.severity, "first_step": int(rec.first_step),
                    "message": rec.message, "evidence": dict(rec.evidence),
                    "resolved_step": None,
                }
            if rec.status == "resolved":
                entry["resolved_step"] = int(rec.step)
            elif rec.severity == "critical":
                entry["severity"] = "critical"
    close = getattr(runtime, "close", None)
    if callable(close):
        close()
    store.close()
    return sorted(alerts.values(), key=lambda a: a["first_step"])


def score(meta: dict[str, Any], alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """Detection, delay, lead time and false alarms of one replayed run."""
    gt = meta["ground_truth"]
    label, onset = meta["label"], meta["onset_step"]
    expected = meta["expected_kinds"]
    fault = gt.get("fault_step")
    first_nf = gt.get("first_nonfinite_step")
    out: dict[str, Any] = {
        "id": meta["id"], "family": meta["family"], "scenario": meta["scenario"],
        "label": label, "onset": onset, "fault_step": fault, "first_nonfinite": first_nf,
        "alerts": [{k: a[k] for k in ("kind", "key", "severity", "first_step", "resolved_step")}
                   for a in alerts],
    }
    if label == "healthy":
        out["false_alarms"] = [a["key"] + f"@{a['first_step']}" for a in alerts]
        return out
    false = []
    for a in alerts:
        if fault is not None and a["first_step"] < fault or fault is None and onset is not None and a["first_step"] < onset and \
                a["kind"] not in expected:
            false.append(a)
    out["false_alarms"] = [a["key"] + f"@{a['first_step']}" for a in false]
    hits = [a for a in alerts if a["kind"] in expected and a not in false]
    out["detected"] = bool(hits)
    out["detect_step"] = hits[0]["first_step"] if hits else None
    out["detect_key"] = hits[0]["key"] if hits else None
    out["delay"] = None if not hits or onset is None else hits[0]["first_step"] - onset
    if label == "diverge":
        blow = [a for a in alerts if a["kind"] in BLOWUP_KINDS and a not in false]
        out["first_blowup_alert"] = blow[0]["first_step"] if blow else None
        out["first_blowup_key"] = blow[0]["key"] if blow else None
        if first_nf is not None:
            out["lead"] = None if not blow else first_nf - blow[0]["first_step"]
        if gt.get("blowup_onset") is not None and blow:
            out["delay_from_heldout_blowup"] = blow[0]["first_step"] - gt["blowup_onset"]
    return out


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The PASS/MISS targets over every scored run."""
    def ids(rs: list[dict[str, Any]]) -> list[str]:
        return [r["id"] for r in rs]

    col = [r for r in rows if r["label"] == "collapse"]
    col_miss = [r for r in col if r["delay"] is None or r["delay"] > 500]
    nf = [r for r in rows if r["label"] == "diverge" and r.get("first_nonfinite") is not None]
    nf_miss = [r for r in nf if r.get("lead") is None or r["lead"] < 0]
    early = [r for r in nf if r.get("lead") is not None and r["lead"] > 0]
    dv = [r for r in rows if r["label"] in ("dwins", "vanishing")]
    dv_miss = [r for r in dv if not r["detected"]]
    healthy = [r for r in rows if r["label"] == "healthy"]
    noisy = [r for r in healthy if r["false_alarms"]]
    return [
        {"target": "T1 collapse flagged within 500 steps of onset", "n": len(col),
         "pass": not col_miss, "missed": ids(col_miss)},
        {"target": "T2 divergence flagged at the latest on the first non-finite value",
         "n": len(nf), "pass": not nf_miss, "missed": ids(nf_miss)},
        {"target": "T2b most blow-ups flagged before the first non-finite value", "n": len(nf),
         "pass": len(early) * 2 > len(nf), "missed": ids([r for r in nf if r not in early])},
        {"target": "T3 discriminator-wins / vanishing-gradient runs flagged", "n": len(dv),
         "pass": not dv_miss, "missed": ids(dv_miss)},
        {"target": "T4 zero warning/critical alerts on healthy runs", "n": len(healthy),
         "pass": not noisy, "missed": [f"{r['id']}: {', '.join(r['false_alarms'])}"
                                       for r in noisy]},
    ]


def _fmt(v: Any) -> str:
    return "-" if v is None else str(v)


def tables(rows: list[dict[str, Any]]) -> tuple[list[str], list[str], list[str]]:
    """Markdown tables: per run, per (family, label) and per detector key."""
    per_run = ["| run | label | onset | first NaN | first alert of expected kind (key@step) | "
               "delay | lead before NaN | false alarms | other alerts |",
               "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        exp = "-" if r["label"] == "healthy" else (
            f"{r['detect_key']}@{r['detect_step']}" if r.get("detected") else "MISSED")
        others = [f"{a['key']}@{a['first_step']}" for a in r["alerts"]
                  if f"{a['key']}@{a['first_step']}" not in r["false_alarms"]
                  and not (r.get("detected") and a["key"] == r["detect_key"]
                           and a["first_step"] == r["detect_step"])]
        per_run.append(
            f"| {r['id']} | {r['label']} | {_fmt(r['onset'])} | {_fmt(r['first_nonfinite'])} | "
            f"{exp} | {_fmt(r.get('delay'))} | {_fmt(r.get('lead'))} | "
            f"{', '.join(r['false_alarms']) or 0} | {', '.join(others) or '-'} |")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["family"] + ("@dfeat" if r["id"].endswith("@dfeat") else ""), r["label"])].append(r)
    per_family = ["| family | label | runs | detected | delay median (min-max) | "
                  "lead before NaN (min-max) | runs with false alarms |",
                  "|---|---|---|---|---|---|---|"]
    for (fam, label), rs in sorted(groups.items()):
        det = "-" if label == "healthy" else f"{sum(bool(r.get('detected')) for r in rs)}/{len(rs)}"
        delays = [r["delay"] for r in rs if r.get("delay") is not None]
        leads = [r["lead"] for r in rs if r.get("lead") is not None]
        d = f"{int(np.median(delays))} ({min(delays)}-{max(delays)})" if delays else "-"
        ld = f"{min(leads)}-{max(leads)}" if leads else "-"
        per_family.append(f"| {fam} | {label} | {len(rs)} | {det} | {d} | {ld} | "
                          f"{sum(bool(r['false_alarms']) for r in rs)}/{len(rs)} |")
    keys: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        false = set(r["false_alarms"])
        for a in r["alerts"]:
            fam = a["key"].split(":")[0].split("/")[0] if a["kind"] != "divergence" else \
                a["key"].split(":")[0]
            tag = f"{a['key']}@{a['first_step']}"
            ctx = "healthy run" if r["label"] == "healthy" else (
                "false (before fault/onset)" if tag in false else (
                    "expected kind" if a["kind"] in (
                        ["mode_collapse"] if r["label"] == "collapse" else
                        list(BLOWUP_KINDS) if r["label"] == "diverge" else
                        ["discriminator_wins"] if r["label"] == "dwins" else
                        ["vanishing_gradients"] if r["label"] == "vanishing" else [])
                    else "other, after fault/onset"))
            keys[fam][ctx] += 1
    ctxs = ["expected kind", "other, after fault/onset", "false (before fault/onset)",
            "healthy run"]
    per_key = ["| detector (alert key) | " + " | ".join(ctxs) + " |",
               "|---|" + "---|" * len(ctxs)]
    for fam in sorted(keys):
        per_key.append(f"| {fam} | " + " | ".join(str(keys[fam][c]) for c in ctxs) + " |")
    return per_run, per_family, per_key


def main(argv: list[str] | None = None) -> int:
    """Replay, score, print the tables and targets, write the JSON summary."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, default=HERE / "recorded")
    p.add_argument("--json", type=Path, default=HERE / "results.json")
    p.add_argument("--batch", type=int, default=25)
    p.add_argument("--only", nargs="*", default=None, help="substrings of run ids to replay")
    p.add_argument("--markdown", action="store_true", help="also print the per-run table")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    rows = []
    for meta in load_manifest(args.dir):
        if args.only and not any(o in meta["id"] for o in args.only):
            continue
        run = load_run(args.dir, meta)
        for emb_set in meta["embedding_sets"] or ["main"]:
            alerts = replay(run, emb_set, args.batch)
            m = dict(meta)
            if emb_set != "main":
                m["id"] = f"{meta['id']}@{emb_set}"
            row = score(m, alerts)
            row["alert_details"] = alerts
            rows.append(row)
            print(f"{m['id']:30s} {m['label']:9s} onset={_fmt(m['onset_step']):5s} "
                  f"alerts: " + ", ".join(f"{a['key']}({a['severity'][0]})@{a['first_step']}"
                                          for a in alerts), flush=True)
    per_run, per_family, per_key = tables(rows)
    tgt = targets(rows)
    print()
    if args.markdown:
        print("\n".join(per_run) + "\n")
    print("\n".join(per_family) + "\n")
    print("\n".join(per_key) + "\n")
    for t in tgt:
        status = "PASS" if t["pass"] else "MISS"
        print(f"{status}  {t['target']} (n={t['n']})"
              + (f"; missed: {'; '.join(t['missed'])}" if t["missed"] and not t["pass"] else "")
              + (f"; not early: {', '.join(t['missed'])}" if t["missed"] and t["pass"] else ""))
    summary = {"batch": args.batch, "runs": rows, "targets": tgt,
               "wall_s": round(time.perf_counter() - t0, 1)}
    args.json.write_text(json.dumps(summary, indent=1, default=float))
    print(f"\n{len(rows)} replays in {summary['wall_s']} s; summary -> {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
