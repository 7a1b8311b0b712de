"""``xattn store``: inspect, merge and export attention/saliency stores.

    xattn store info STORE [--records]          kind, settings, record count, array shapes
    xattn store verify STORE [STORE ...]        read every record and check its checksum
    xattn store merge SHARD [SHARD ...] --out OUT   shards -> one store, records sorted by id
    xattn store export STORE --out DIR [--ids ID ...]   one .npy per record array + meta.jsonl

Errors (a missing, truncated or corrupt store, shards that do not belong together) are
:class:`~fairseq_xattn.stores.StoreError`, a :class:`~fairseq_xattn.errors.UserError`: the ``xattn``
dispatcher prints them as one line ``xattn store: error: ...`` and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..files import check_output
from .record_store import StoreError, StoreReader, merge_stores


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = sub.add_parser("info", help="kind, settings, number of records and array shapes")
    info.add_argument("store")
    info.add_argument("--records", action="store_true", help="one line per record")
    verify = sub.add_parser("verify", help="read every record and check its checksum (names the first damaged one)")
    verify.add_argument("stores", nargs="+", metavar="store")
    merge = sub.add_parser("merge", help="merge shard stores (same kind and settings) into one")
    merge.add_argument("stores", nargs="+")
    merge.add_argument("--out", required=True, help="output store directory (must not exist)")
    merge.add_argument("--allow-missing-shards", action="store_true",
                       help="merge an incomplete set of shards (the merged meta lists missing_shards)")
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
            rec = reader.get(*key)
            shapes = ", ".join(f"{n} {'x'.join(map(str, a.shape))} {a.dtype}" for n, a in rec.arrays.items())
            extra = f" n_masks={rec.meta['n_masks']}" if "n_masks" in rec.meta else ""
            print(f"{key[0]}\trank {key[1]}\t{shapes}{extra}")
    return 0


def _verify(args) -> int:
    for path in args.stores:
        with StoreReader(path) as reader:
            report = reader.verify()
        unchecked = report.arrays - report.checksummed
        legacy = (f"; {unchecked} array(s) of an older version have no checksum: their length and header were "
                  f"checked") if unchecked else ""
        print(f"{path}: OK, {report.records} records, {report.arrays} arrays, {report.bytes} bytes, "
              f"{report.checksummed} checksums match{legacy}")
    return 0


def _merge(args) -> int:
    if Path(args.out).exists():
        raise StoreError(f"--out {args.out} already exists; choose a new directory")
    check_output(args.out, "--out", {"the input store": args.stores}, folder=True)
    n = merge_stores(args.stores, args.out, allow_missing_shards=args.allow_missing_shards)
    print(f"merged {len(args.stores)} stores, {n} records -> {args.out}")
    return 0


def _export(args) -> int:
    out = check_output(args.out, "--out", {"the input store": args.store}, folder=True)
    wanted = set(args.ids) if args.ids else None
    n = 0
    with StoreReader(args.store) as reader:
        absent = sorted(wanted - set(reader.ids())) if wanted is not None else []
        if absent:  # before writing anything
            raise StoreError(f"--ids: {len(absent)} of the requested ids are not in {args.store}: {absent[:5]}")
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "meta.jsonl", "w") as meta_file:
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
    print(f"exported {n} records -> {out}")
    return 0


def main(args) -> int:
    # StoreError is a UserError: the xattn dispatcher prints it as one line and exits with status 2
    return {"info": _info, "verify": _verify, "merge": _merge, "export": _export}[args.action](args)
