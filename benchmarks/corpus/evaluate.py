"""Replay the corpus through the server's detector pipeline and score it against ground truth.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.corpus.evaluate --split tune   # while tuning
    .venv/bin/python -m benchmarks.corpus.evaluate --split test   # the report
        [--cache DIR] [--only SUBSTRING ...] [--extractor raw random clf dfeat main]
        [--workers 2] [--json FILE] [--batch 25]

Each run is replayed once per embedding extractor it recorded, through the server's own path:
every batch of ``--batch`` steps is stored in an in-memory :class:`SQLiteStore` and handed to
:class:`DetectorRuntime` (embedding evaluations inline), alerts through :class:`AlertManager`.
Labels come from the ground truth (``labels.py``). Scores (warning and critical alerts only;
``info`` markers never count):

- *collapse*: a ``mode_collapse`` alert within 500 steps of the onset (runs whose collapse
  begins too close to their end to tell are reported apart); full collapses need a critical one;
- *diverge*: a divergence alert at the latest on the first non-finite value;
- *dwins*, *vanishing*, *broken*: an alert of an expected kind (any kind for broken runs);
- *healthy*: no warning or critical alert at all, with every extractor;
- *badge*: the run's final health (``healthy`` / ``warning`` / ``critical``) agrees with its
  label: healthy runs green, every other scored label not green.

Prints per-family tables for the chosen split and writes every replay's alerts to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.corpus.labels import EXPECTED_KINDS, Label, label_run, learn_steps
from benchmarks.corpus.record import cache_dir
from benchmarks.corpus.stream import RecordedRun, load_run

HERE = Path(__file__).resolve().parent
SCORED = ("healthy", "collapse", "diverge", "dwins", "vanishing", "broken")
DELAY = 500


def load_metas(directory: Path) -> list[dict[str, Any]]:
    """Every complete run in the cache (its JSON, ``<config>-s<seed>.json``, is written last)."""
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*-s[0-9]*.json"))]


def replay(run: RecordedRun, extractor: str | None, batch: int = 25) -> dict[str, Any]:
    """Feed ``run`` (with one extractor's embeddings) to a fresh server pipeline."""
    from stethoscope.app.alerting import AlertManager
    from stethoscope.app.runtime import DetectorRuntime
    from stethoscope.app.storage import EmbeddingInput, SQLiteStore

    store = SQLiteStore(":memory:")
    runtime = DetectorRuntime(store, AlertManager(store), embedding_workers=0)
    name = "replay"
    store.upsert_run(name, config={}, status="running")
    emb = run.embeddings.get(extractor) if extractor else None
    last = run.last_step
    for i, lo in enumerate(range(0, last + 1, batch)):
        hi = lo + batch
        scalars = {}
        for key, (steps, values) in run.scalars.items():
            a, b = np.searchsorted(steps, [lo, hi])
            if b > a:
                scalars[key] = (steps[a:b], values[a:b])
        embeddings: list[Any] = []
        if emb is not None:
            esteps, fake, real = emb
            for j in np.nonzero((esteps >= lo) & (esteps < hi))[0]:
                s = int(esteps[j])
                embeddings.append(EmbeddingInput(s, "fake", np.asarray(fake[j], np.float32)))
                if real is not None:
                    embeddings.append(EmbeddingInput(s, "real", np.asarray(real[j], np.float32)))
        seq = store.ingest_batch(name, f"b{i}", scalars, embeddings)
        runtime.process(name, seq, scalars, embeddings)
    runtime.close()
    alerts = [
        {"kind": a.kind, "key": a.key, "severity": a.severity, "first_step": a.first_step,
         "status": a.status, "resolved_step": a.resolved_step, "episodes": a.episodes}
        for a in store.list_alerts(name)
    ]
    health = store.get_run(name).health
    store.close()
    return {"alerts": alerts, "health": health.get("state", "unknown")}


def score(meta: dict[str, Any], label: Label, result: dict[str, Any]) -> dict[str, Any]:
    """How one replay did against its label."""
    alerts = [a for a in result["alerts"] if a["severity"] in ("warning", "critical")]
    gt = meta["ground_truth"]
    end = gt.get("steps_run") or max(gt.get("eval_steps") or [0])
    row: dict[str, Any] = {"label": label.label, "onset": label.onset, "detail": label.detail,
                           "health": result["health"], "alerts": result["alerts"]}
    if label.label == "healthy":
        row["false_alarms"] = [f"{a['key']}({a['severity'][0]})@{a['first_step']}"
                               for a in alerts]
        row["ok"] = not alerts
        row["badge_ok"] = result["health"] == "healthy"
        return row
    if label.label not in SCORED:
        return row
    row["badge_ok"] = result["health"] in ("warning", "critical")
    kinds = EXPECTED_KINDS[label.label]
    hits = [a for a in alerts if a["kind"] in kinds]
    if label.critical:
        hits = [a for a in hits if a["severity"] == "critical"] or hits
    first = min((a["first_step"] for a in hits), default=None)
    row["detect_step"] = first
    onset = label.onset or 0
    if label.label == "collapse":
        row["scorable"] = onset + DELAY <= end
        row["delay"] = None if first is None else first - onset
        ok = first is not None and first <= onset + DELAY
        if label.critical:
            ok = ok and any(a["severity"] == "critical" for a in hits)
        row["ok"] = ok
    elif label.label == "diverge":
        row["ok"] = first is not None and (gt.get("first_nonfinite_step") is None
                                           or first <= gt["first_nonfinite_step"])
        if gt.get("first_nonfinite_step") is not None and first is not None:
            row["lead"] = gt["first_nonfinite_step"] - first
    else:
        row["ok"] = first is not None
    return row


def _job(args: tuple[str, dict[str, Any], str | None, int, Label]) -> dict[str, Any]:
    directory, meta, extractor, batch, label = args
    run = load_run(Path(directory), meta)
    t0 = time.perf_counter()
    result = replay(run, extractor, batch)
    row = score(meta, label, result)
    row.update(id=meta["id"], config=meta["config"], family=meta["family"],
               split=meta["split"], extractor=extractor or "-",
               wall_s=round(time.perf_counter() - t0, 2))
    return row


def tasks(metas: list[dict[str, Any]], directory: Path, split: str | None,
          only: list[str] | None, extractors: list[str] | None,
          batch: int) -> Iterable[tuple[str, dict[str, Any], str | None, int, Label]]:
    learn = learn_steps(metas)
    for meta in metas:
        if split and meta["split"] != split:
            continue
        if only and not any(o in meta["id"] for o in only):
            continue
        label = label_run(meta, learn)
        sets = meta["embedding_sets"] or [None]
        for ex in sets:
            if extractors and ex is not None and ex not in extractors:
                continue
            yield str(directory), meta, ex, batch, label


def tables(rows: list[dict[str, Any]]) -> list[str]:
    """Per family and extractor: runs per label, caught, false alarms, badges."""
    out = ["| family | extractor | label | runs | caught | median delay | badge agrees |",
           "|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["family"], r["extractor"], r["label"])].append(r)
    for (fam, ex, label), rs in sorted(groups.items()):
        if label not in SCORED:
            out.append(f"| {fam} | {ex} | {label} | {len(rs)} | (not scored) | - | - |")
            continue
        if label == "collapse":
            scorable = [r for r in rs if r.get("scorable")]
            caught = f"{sum(r['ok'] for r in scorable)}/{len(scorable)}"
            if len(scorable) < len(rs):
                caught += f" (+{len(rs) - len(scorable)} too late to tell)"
        elif label == "healthy":
            caught = f"{sum(r['ok'] for r in rs)}/{len(rs)} silent"
        else:
            caught = f"{sum(r['ok'] for r in rs)}/{len(rs)}"
        delays = [r["delay"] for r in rs if r.get("delay") is not None]
        med = f"{int(np.median(delays))}" if delays else "-"
        badge = f"{sum(bool(r.get('badge_ok')) for r in rs)}/{len(rs)}"
        out.append(f"| {fam} | {ex} | {label} | {len(rs)} | {caught} | {med} | {badge} |")
    return out


def condensed(rows: list[dict[str, Any]]) -> list[str]:
    """One line per family and label, one column per extractor: caught (or silent) / runs."""
    extractors = ["raw", "random", "clf", "dfeat", "main", "-"]
    cells: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(list))
    for r in rows:
        if r["label"] in SCORED:
            cells[(r["family"], r["label"])][r["extractor"]].append(r)
    used = [e for e in extractors if any(e in c for c in cells.values())]
    out = ["| family | label | " + " | ".join(used) + " |", "|---|---|" + "---|" * len(used)]
    for (fam, label), by_ex in sorted(cells.items()):
        parts = []
        for e in used:
            rs = [r for r in by_ex.get(e, []) if label != "collapse" or r.get("scorable")]
            parts.append(f"{sum(bool(r.get('ok')) for r in rs)}/{len(rs)}" if rs else "")
        out.append(f"| {fam} | {label} | " + " | ".join(parts) + " |")
    return out


def targets(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets over the rows (each replay counts once)."""
    def frac(rs: list[dict[str, Any]], key: str = "ok") -> str:
        return f"{sum(bool(r.get(key)) for r in rs)}/{len(rs)}" + (
            f" = {100 * sum(bool(r.get(key)) for r in rs) / len(rs):.0f} %" if rs else "")

    col = [r for r in rows if r["label"] == "collapse" and r.get("scorable")]
    div = [r for r in rows if r["label"] == "diverge"]
    other = [r for r in rows if r["label"] in ("dwins", "broken", "vanishing")]
    healthy = [r for r in rows if r["label"] == "healthy"]
    badge = [r for r in rows if r["label"] in SCORED]
    return [
        f"collapse caught within {DELAY} steps of onset (>= 95 %): {frac(col)}",
        f"divergence caught by the first non-finite value (100 %): {frac(div)}",
        f"D wins, dead, clamped, never learned, vanishing caught: {frac(other)}",
        f"healthy replays without a warning or critical alert (all): {frac(healthy)}",
        f"final badge agrees with the ground truth (>= 95 %): {frac(badge, 'badge_ok')}",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", choices=["tune", "test"], default=None)
    p.add_argument("--cache", default=None)
    p.add_argument("--only", nargs="*", default=None)
    p.add_argument("--extractor", nargs="*", default=None)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--batch", type=int, default=25)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    directory = cache_dir(args.cache)
    metas = load_metas(directory)
    todo = list(tasks(metas, directory, args.split, args.only, args.extractor, args.batch))
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    pool = multiprocessing.get_context("spawn").Pool(args.workers) if args.workers > 1 else None
    results = pool.imap_unordered(_job, todo) if pool else map(_job, todo)
    for row in results:
        rows.append(row)
        if not args.quiet:
            bad = "" if row.get("ok", True) else "  <-- MISS" if row["label"] != "healthy" \
                else "  <-- FALSE ALARM"
            alerts = ", ".join(f"{a['key']}({a['severity'][0]})@{a['first_step']}"
                               for a in row["alerts"] if a["severity"] != "info")
            print(f"{row['id']:24s} {row['extractor']:7s} {row['label']:9s} "
                  f"onset={row.get('onset')} health={row['health']:8s} {alerts}{bad}",
                  flush=True)
    if pool:
        pool.close()
    rows.sort(key=lambda r: (r["family"], r["id"], r["extractor"]))
    print()
    print("\n".join(tables(rows)))
    print()
    print("\n".join(condensed(rows)))
    print()
    print("\n".join(targets(rows)))
    print(f"\n{len(rows)} replays of split {args.split or 'all'} in "
          f"{time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"split": args.split, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
