"""``edgestream state``: the hub's checkpoints, for operators.

    edgestream state list    [-c hub.yaml]            # every checkpoint: number, kind, time, size, what it holds
    edgestream state inspect [-c hub.yaml] [N]        # what checkpoint N (default: the one a start would use)
                                                      # holds: open windows, keys, watermark, sequence positions
    edgestream state verify  [-c hub.yaml]            # checksums, chains, and the state against the config
    edgestream state reset   [-c hub.yaml] --pipeline P  # drop P's state (a new checkpoint without it); --all:
                                                         # delete every checkpoint

Without ``-c`` the config is ``/etc/edgestream/hub.yaml``, else ``./hub.yaml``
(as for ``hub run``). The folder is the config's ``state.dir`` (default
``.edgestream/state`` beside hub.yaml); a hub that ran several worker processes (``hub.workers``) has one
folder per worker (``worker-<k>``), and each command runs on each of them in turn (``reset --all`` also
forgets how the state was split, so the next start may split it another way). ``list``, ``inspect`` and
``verify`` only read, so they work beside a running hub; ``reset`` refuses to run while a hub holds the folder.

Exit codes: 0 done (``verify``: every checkpoint is intact and the one a start
would use fits the config); 1 ``verify`` found a damaged checkpoint or state
the config cannot resume from, ``inspect`` was asked for a damaged or missing
checkpoint, or ``reset`` found the folder in use; 2 bad usage or a config
that does not load.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from edgestream_hub.checkpoint import CheckpointError, CheckpointStore, CorruptCheckpoint, Restored, state_dir

_SHOWN = 10  # windows and positions listed per processor and source before "... and N more"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="{list,inspect,verify,reset}")
    for name, help in (("list", "list the checkpoints: number, kind, time, size, pipelines"),
                       ("inspect", "show what a checkpoint holds per pipeline, processor and source"),
                       ("verify", "check every checkpoint's checksum and the state against the config"),
                       ("reset", "drop a pipeline's state (or every checkpoint) so the next start begins afresh")):
        s = sub.add_parser(name, help=help, description=help)
        s.add_argument("-c", "--config", default=None,
                       help="the hub.yaml whose state to use (default: /etc/edgestream/hub.yaml or ./hub.yaml)")
        s.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                       help="override a config value, as for hub run")
        if name == "inspect":
            s.add_argument("checkpoint", nargs="?", type=_number, default=None,
                           help="checkpoint number (default: the newest usable one)")
            s.add_argument("--json", action="store_true", help="print the checkpoint's sections as JSON")
        if name == "list":
            s.add_argument("--json", action="store_true", help="one JSON object per checkpoint")
        if name == "reset":
            g = s.add_mutually_exclusive_group(required=True)
            g.add_argument("--pipeline", action="append", default=[], metavar="PIPELINE",
                           help="drop this pipeline's state (repeatable)")
            g.add_argument("--all", action="store_true", help="delete every checkpoint")


def _number(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text}: expected a checkpoint number, 1 or more")
    return n


def run(args: argparse.Namespace) -> int:
    from edgestream_hub.config import find_config, load_config
    from edgestream_hub.errors import EdgeStreamError

    try:
        args.config = find_config(args.config)
        cfg = load_config(args.config, sets=args.set)
    except EdgeStreamError as e:
        print(f"edgestream state {args.action}: {e}", file=sys.stderr)
        return 2
    from edgestream_hub import workers

    folder = state_dir(cfg.state, cfg.base_dir)
    if folder is None:
        print(f"{args.config}: state.enabled is false: this hub keeps no checkpoints")
        return 0
    action = {"list": _list, "inspect": _inspect, "verify": _verify, "reset": _reset}[args.action]
    folders = workers.worker_dirs(cfg)
    if not folders:
        store = CheckpointStore(folder, full_every=cfg.state["full_every"], retain=cfg.state["retain"])
        return int(action(args, cfg, store))
    rc = 0
    for i, f in enumerate(folders):
        print(f"worker {i} ({f}):", flush=True)
        rc = max(rc, int(action(args, cfg, CheckpointStore(f, full_every=cfg.state["full_every"],
                                                           retain=cfg.state["retain"]))))
    if args.action == "reset" and args.all and rc == 0:
        (workers.base_dir_of(cfg) / workers.LAYOUT_FILE).unlink(missing_ok=True)
        print("forgot how the state was split: the next start may run another number of workers")
    return rc


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) if ms is not None else "-"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"


def _names(sections: list[str], kind: str) -> list[str]:
    return [s.split("/", 1)[1] for s in sections if s.startswith(kind + "/")]


def _list(args: argparse.Namespace, cfg: Any, store: CheckpointStore) -> int:
    numbers = store.numbers()
    if not args.json:
        print(f"state folder: {store.dir}")
        if not numbers:
            print("no checkpoints yet" if store.dir.is_dir() else
                  "no such folder: no hub has run with this state.dir yet (or state.dir is mistyped)")
            return 0
        print(f"{'checkpoint':>10}  {'kind':<5} {'base':>6}  {'written (UTC)':<19}  {'size':>9}  pipelines")
    for n in numbers:
        try:
            h = store.header(n)
            size = store.path(n).stat().st_size
        except (CorruptCheckpoint, OSError) as e:
            if args.json:
                print(json.dumps({"checkpoint": n, "error": str(e)}))
            else:
                print(f"{n:>10}  unreadable: {e}")
            continue
        pipelines = _names(h.names, "pipeline")
        if args.json:
            print(json.dumps({"checkpoint": n, "kind": h.kind, "base": h.base, "at_ms": h.at_ms, "bytes": size,
                              "pipelines": pipelines, "sources": _names(h.names, "source"),
                              "written": h.written}))
        else:
            print(f"{n:>10}  {h.kind:<5} {h.base:>6}  {_when(h.at_ms):<19}  {_size(size):>9}  "
                  f"{', '.join(pipelines) or '-'}")
    return 0


def _pick(args: argparse.Namespace, store: CheckpointStore) -> Restored | None:
    if args.checkpoint is None:
        r = store.restore()
        for p in r.problems:
            print(f"skipped: {p}", file=sys.stderr)
        return r if r.n is not None or r.legacy else None
    try:
        return store.assemble(args.checkpoint)
    except CorruptCheckpoint as e:
        print(f"edgestream state inspect: {e}", file=sys.stderr)
        return None


def _inspect(args: argparse.Namespace, cfg: Any, store: CheckpointStore) -> int:
    r = _pick(args, store)
    if r is None:
        if args.checkpoint is None:
            print(f"no usable checkpoint in {store.dir}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"checkpoint": r.n, "at_ms": r.at_ms, "chain": r.chain, "sections": r.sections}))
        return 0
    what = f"checkpoint {r.n}" if r.n is not None else "the per-pipeline state files"
    chain = f" (restored from {', '.join(map(str, r.chain))})" if len(r.chain) > 1 else ""
    print(f"{what} in {store.dir}, written {_when(r.at_ms)} UTC{chain}")
    for name in sorted(r.sections):
        kind, _, label = name.partition("/")
        sec = r.sections[name]
        if kind == "pipeline":
            print(f"pipeline {label}" + ("" if label in cfg.pipelines else "  (not in the config: dropped at the "
                                                                            "next checkpoint)"))
            for proc, snap in sorted((sec.get("processors") or {}).items()):
                for line in _processor_lines(cfg, label, proc, snap):
                    print("  " + line)
        elif kind == "source":
            print(f"source {label}" + ("" if label in cfg.sources else "  (not in the config)"))
            for line in _position_lines(sec.get("positions")):
                print("  " + line)
    return 0


def _build(cfg: Any, pipeline: str, label: str, snap: Any) -> tuple[Any, str | None]:
    """The processor ``label`` of ``pipeline`` as the config builds it, resumed from ``snap``: (it, None),
    or (None, why it cannot be built)."""
    from edgestream_hub.components import ComponentContext
    from edgestream_hub.registry import Registry

    pc = cfg.pipelines.get(pipeline)
    cc = next((c for c in pc.processors if c.label == label), None) if pc is not None else None
    if cc is None:
        return None, "not in the config"
    registry = Registry.default()
    t = registry.get("processor", cc.type)
    if t is None:
        return None, f"unknown processor type {cc.type!r}"
    ctx = ComponentContext("processor", cc.name, cc.label, pipeline=pipeline, base_dir=cfg.base_dir,
                           registry=registry, resume_state=snap)
    try:
        return t.factory(cc.config, ctx), None
    except Exception as e:
        return None, str(e)


def _processor_lines(cfg: Any, pipeline: str, label: str, snap: Any) -> list[str]:
    if snap is None:
        return [f"processor {label}: no state"]
    size = len(json.dumps(snap))
    proc, why = _build(cfg, pipeline, label, snap)
    head = f"processor {label}: {_size(size)} of state"
    if proc is None:
        query = snap.get("query") if isinstance(snap, dict) else None
        lines = [f"{head}; cannot be read with the current config: {why}"]
        if query:
            lines.append(f"  query in the checkpoint: {' '.join(str(query).split())[:200]}")
        return lines
    summary = getattr(proc, "state_summary", None)
    if summary is None:
        return [head]
    s = summary()
    lines = [f"{head} ({s['mode']} mode)"]
    facts = [f"watermark {s['watermark']}" if s.get("watermark") is not None else "no watermark yet"]
    for key, one, many in (("keys", "key", "keys"), ("held", "held", "held"), ("emitted", "row emitted",
                            "rows emitted"), ("late", "late", "late"), ("dead_letters", "dead letter", "dead letters")):
        if key in s:
            facts.append(f"{s[key]} {one if s[key] == 1 else many}")
    lines.append("  " + ", ".join(facts))
    wins = s.get("windows")
    if wins is not None:
        lines.append(f"  {len(wins)} open window{'s' if len(wins) != 1 else ''}" + (":" if wins else ""))
        for start, end, groups in wins[:_SHOWN]:
            span = f"[{start}, {end})" if start is not None else "(no window)"
            lines.append(f"    {span} {groups} group{'s' if groups != 1 else ''}")
        if len(wins) > _SHOWN:
            lines.append(f"    ... and {len(wins) - _SHOWN} more")
    return lines


def _position_lines(pos: Any) -> list[str]:
    streams = pos.get("seq") if isinstance(pos, dict) else None
    if not isinstance(streams, list):
        return ["no sequence positions"]
    devices = {e[0] for e in streams if isinstance(e, list) and e}
    lines = [f"sequence positions: {len(streams)} streams of {len(devices)} devices"]
    for e in sorted(streams, key=lambda e: (str(e[0]), str(e[1])))[:_SHOWN]:
        dev, kind, boot, high, _, _, gaps = e
        lines.append(f"  {dev} {kind}: boot {boot}, seen up to seq {high}, {len(gaps) // 2} open gaps")
    if len(streams) > _SHOWN:
        lines.append(f"  ... and {len(streams) - _SHOWN} more")
    return lines


def _verify(args: argparse.Namespace, cfg: Any, store: CheckpointStore) -> int:
    numbers = store.numbers()
    print(f"state folder: {store.dir}")
    if not numbers:
        print("no checkpoints yet: a start begins with empty state" if store.dir.is_dir() else
              "no such folder: no hub has run with this state.dir yet (or state.dir is mistyped); "
              "a start begins with empty state")
        return 0
    bad = 0
    cache: dict[int, Any] = {}
    for n in numbers:
        try:
            store.assemble(n, cache)  # its chain applied: entries that do not add up are damage too
            h = cache[n][0]
            print(f"checkpoint {n}: ok ({h.kind}{'' if h.kind == 'full' else f' on {h.base}'})")
        except CorruptCheckpoint as e:
            bad += 1
            print(f"checkpoint {n}: DAMAGED: {e}")
    r = store.restore()
    if r.n is None:
        print("no checkpoint is usable: a start begins with empty state")
        return 1
    print(f"a start resumes from checkpoint {r.n}")
    for name in sorted(r.sections):
        kind, _, label = name.partition("/")
        sec = r.sections[name]
        if kind == "pipeline":
            if label not in cfg.pipelines:
                print(f"pipeline {label}: not in the config (its state is dropped at the next checkpoint)")
                continue
            for proc, snap in sorted((sec.get("processors") or {}).items()):
                if snap is None:
                    continue
                _, why = _build(cfg, label, proc, snap)
                if why is None:
                    print(f"pipeline {label}, processor {proc}: resumes")
                elif why == "not in the config":
                    print(f"pipeline {label}, processor {proc}: not in the config (its state is dropped)")
                else:
                    bad += 1
                    print(f"pipeline {label}, processor {proc}: INCOMPATIBLE: {why} (start with --fresh-state "
                          f"{label}, or: edgestream state reset -c {args.config} --pipeline {label})")
        elif kind == "source":
            problem = _positions_problem(sec.get("positions"))
            if problem:
                bad += 1
                print(f"source {label}: UNREADABLE positions: {problem}")
            else:
                print(f"source {label}: positions resume" + ("" if label in cfg.sources else " (not in the config)"))
    for name in cfg.pipelines:
        if f"pipeline/{name}" not in r.sections:
            print(f"pipeline {name}: no state in the checkpoint (starts empty)")
    return 1 if bad else 0


def _positions_problem(pos: Any) -> str | None:
    from edgestream_hub.wire import SeqTracker

    if not isinstance(pos, dict) or "seq" not in pos:
        return "not sequence positions"
    try:
        SeqTracker().restore(pos["seq"])
    except ValueError as e:
        return str(e)
    return None


def _reset(args: argparse.Namespace, cfg: Any, store: CheckpointStore) -> int:
    from edgestream_hub.checkpointer import dumps

    if not store.dir.is_dir():  # a mistyped state.dir: taking the lock would create it
        print(f"no state folder {store.dir}: nothing to reset")
        return 0
    try:
        store.lock()
    except CheckpointError as e:
        print(f"edgestream state reset: {e}: stop it first", file=sys.stderr)
        return 1
    try:
        if args.all:
            gone = store.numbers()
            for n in gone:
                store.path(n).unlink(missing_ok=True)
            print(f"deleted {len(gone)} checkpoints in {store.dir}: the next start begins with empty state")
            return 0
        r = store.restore()
        for p in r.problems:
            print(f"skipped: {p}", file=sys.stderr)
        if r.n is None and not r.legacy:
            print(f"no checkpoint in {store.dir}: nothing to reset")
            return 0
        drop = {f"pipeline/{p}" for p in args.pipeline}
        missing = sorted(p for p in args.pipeline if f"pipeline/{p}" not in r.sections)
        for p in missing:
            print(f"pipeline {p}: no state in the checkpoint")
        if len(missing) == len(args.pipeline):
            return 0
        w = store.write({k: dumps(v) for k, v in r.sections.items() if k not in drop}, full=True)
        kept = sorted(set(args.pipeline) - set(missing))
        print(f"checkpoint {w.n} written without the state of {', '.join(kept)}: "
              f"{'it starts' if len(kept) == 1 else 'they start'} empty at the next start")
        return 0
    finally:
        store.unlock()
