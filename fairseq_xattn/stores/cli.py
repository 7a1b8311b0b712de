"""``xattn store``: inspect, merge and export attention/saliency stores.

    xattn store info STORE [--records]          kind, settings, record count, array shapes
    xattn store merge SHARD [SHARD ...] --out OUT   shards -> one store, records sorted by id
    xattn store export STORE --out DIR [--ids ID ...]   one .npy per record array + meta.jsonl
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .record_store import StoreError, StoreReader, merge_stores


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = sub.add_parser("info", help="kind, settings, number of records and array shapes")
    info.add_argument("store")
    info.add_argument("--records", action="store_true", help="one line per record")
    merge = sub.add_parser("merge", help="merge shard stores (same kind and settings) into one")
    merge.add_argument("stores", nargs="+")
    merge.add_argument("--out", required=True, help="output store directory (must not exist)")
    export = sub.add_parser("export", help="write each record's arrays as .npy files")
    export.add_argument("store")
    export.add_argument("--out", required=True, help="output directory")
    export.add_argument("--ids", nargs="*", help="only these utterance ids")


def _info(args) -> int:
    with StoreReader(args.store) as reader:
        settings = {k: v for k, v in reader.meta.items() if k not in ("format", "version")}
        print(f"{reader.path}: kind {reader.kind!r}, {len(reader)} records, {len(reader.ids())} utterances")
        print("settings: " + json.dumps(settings, sort_keys=True))
        for key in reader.keys() if args.records else []:
            rec = reader.get(*key)  # (mmap=True fails on numpy 2: record_store._memmap)
            shapes = ", ".join(f"{n} {'x'.join(map(str, a.shape))} {a.dtype}" for n, a in rec.arrays.items())
            extra = f" n_masks={rec.meta['n_masks']}" if "n_masks" in rec.meta else ""
            print(f"{key[0]}\trank {key[1]}\t{shapes}{extra}")
    return 0


def _merge(args) -> int:
    if Path(args.out).exists():
        raise SystemExit(f"xattn store merge: --out {args.out} already exists; choose a new directory")
    n = merge_stores(args.stores, args.out)
    print(f"merged {len(args.stores)} stores, {n} records -> {args.out}")
    return 0


def _export(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = set(args.ids) if args.ids else None
    n = 0
    with StoreReader(args.store) as reader, open(out / "meta.jsonl", "w") as meta_file:
        for utt_id, rank in reader.keys():
            if wanted is not None and utt_id not in wanted:
                continue
            rec = reader.get(utt_id, rank)
            stem = utt_id if rank == 0 else f"{utt_id}.rank{rank}"
            files = {}
            for name, array in rec.arrays.items():
                files[name] = f"{stem}.{name}.npy"
                np.save(out / files[name], array)
            meta_file.write(json.dumps({"id": utt_id, "rank": rank, "files": files, "meta": rec.meta}) + "\n")
            n += 1
    if wanted is not None and n < len(wanted):
        raise SystemExit(f"xattn store export: {len(wanted) - n} of the requested ids are not in {args.store}")
    print(f"exported {n} records -> {out}")
    return 0


def main(args) -> int:
    try:
        return {"info": _info, "merge": _merge, "export": _export}[args.action](args)
    except StoreError as e:
        raise SystemExit(f"xattn store {args.action}: {e}")
