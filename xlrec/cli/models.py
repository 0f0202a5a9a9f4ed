"""`xlrec evaluate`, `xlrec recommend` and `xlrec registry list/download`: a logged or registered
model, loaded through xlrec.platform.registry (the one reader of the model format)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from xlrec.cli.common import add_tracking_args, connect, data_source
from xlrec.errors import XlrecError


def cmd_evaluate(args: argparse.Namespace) -> int:
    from xlrec.data_prep import prepare_config
    from xlrec.device import select_runtime
    from xlrec.experiment import assemble
    from xlrec.platform.registry.loading import load_model
    from xlrec.rec_models import parameter_breakdown

    connect(args)
    rt = select_runtime(args.device or "auto", "auto", True)
    loaded = load_model(args.model_uri, rt)
    cfg = loaded.config
    same_file = cfg.data_file is not None and str(Path(args.dataset or "").absolute()) == cfg.data_file
    if args.dataset and args.dataset != cfg.dataset and not same_file:
        raise XlrecError(
            f"Model {args.model_uri} was trained on {cfg.dataset!r}, not {args.dataset!r}; its item ids mean nothing "
            f"there. Evaluate it with --dataset {cfg.dataset}, or pick a model registered for {args.dataset} "
            f"(e.g. models:/{cfg.model}-{args.dataset}@champion)."
        )
    data = prepare_config(cfg, data_source(args.source, cfg.source))
    if data.seqs.num_items + 1 != len(loaded.item_ids):
        raise XlrecError(
            f"Dataset {cfg.dataset} now has {data.seqs.num_items} items but the model was trained on "
            f"{len(loaded.item_ids) - 1}; the raw data or preprocessing differ from the training run."
        )
    exp = assemble(cfg, data, runtime=rt, model=loaded.model)  # the training run's split, scored the same way
    val, test = exp.evaluate("val"), exp.evaluate("test")
    summary = {
        "model": cfg.model,
        "dataset": cfg.dataset,
        "seed": cfg.seed,
        "max_len": cfg.max_len,
        "params": parameter_breakdown(exp.model)["total"],
        "model_uri": args.model_uri,
        "run_id": loaded.run_id,
    }
    if loaded.run_id and not loaded.local:
        from xlrec.platform.tracking.read import run_timing

        summary.update(run_timing(loaded.run_id))
    summary.update({"val": val.metrics, "test": test.metrics, "cold_start": exp.cold_start_metrics()})
    print(json.dumps(summary))
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from xlrec.device import select_runtime
    from xlrec.platform.registry.loading import load_model
    from xlrec.platform.registry.serving import recommender

    raw_items = None
    if args.items is not None:
        raw_items = [x.strip() for x in args.items.split(",") if x.strip()]
        if not raw_items:
            raise XlrecError(
                f"--items {args.items!r} names no item; pass comma-separated raw item ids, oldest "
                f"first (e.g. --items 50,172,133)."
            )
    elif args.user is None:
        raise XlrecError("Pass --user ID or --items ID,ID,... to say whose next items to recommend.")
    if args.k < 1:
        raise XlrecError(f"--k must be at least 1 (how many items to recommend), got {args.k}.")
    connect(args)
    rt = select_runtime(args.device or "auto", "auto", True)
    loaded = load_model(args.model_uri, rt)
    cfg, rec = loaded.config, recommender(loaded, rt)  # the scoring the served model answers with
    if raw_items is not None:
        history = rec.history_indices(raw_items)
    else:
        from xlrec.data_prep import prepare_config

        data = prepare_config(cfg, data_source(args.source, cfg.source))
        users = {str(u): i for i, u in enumerate(data.seqs.user_ids.tolist())}
        if str(args.user) not in users:
            raise XlrecError(f"User {args.user} is not in {cfg.dataset}. Pass a raw user id of that dataset.")
        u = users[str(args.user)]
        history = data.seqs.items[data.seqs.offsets[u] : data.seqs.offsets[u + 1]]
        print(
            f"(user {args.user}: ranked after the whole history, {len(history)} items with the test item; a report's "
            f"qualitative table is the test case, the history before it)",
            file=sys.stderr,
        )
    ranked = rec.recommend(history, args.k, flag="--k")
    for rank, (item, title, score) in enumerate(zip(ranked.item_ids, ranked.titles, ranked.scores), 1):
        print(f"{rank:2d}. {title} (item {item}, score {score:.3f})")
    return 0


def cmd_registry_list(args: argparse.Namespace) -> int:
    from xlrec.platform.registry.champion import METRIC_TAG, list_registered
    from xlrec.redact import redact

    uri = connect(args)
    registered = list_registered()
    if not registered:
        print(f"No registered models at {redact(uri)}.")
    for name, versions in registered.items():
        print(name)
        for v in versions:
            alias = ",".join(v.aliases)
            print(
                f"  v{v.version:<4} {METRIC_TAG}={v.val_metric:<14} seed={v.seed:<6} "
                f"run={v.run_id} {('@' + alias) if alias else ''}"
            )
    return 0


def cmd_registry_download(args: argparse.Namespace) -> int:

    from xlrec.platform.registry.loading import download_model
    from xlrec.platform.registry.model_format import CONFIG, ITEM_MAP, WEIGHTS

    connect(args)
    ref = f"@{args.alias}" if args.alias else f"/{args.version}"
    uri = f"models:/{args.name}{ref}"
    path, data, run_id = download_model(uri, Path(args.dst))
    print(
        json.dumps(
            {
                "model_uri": uri,
                "path": str(path),
                "run_id": run_id,
                "config": str(data / CONFIG),
                "item_map": str(data / ITEM_MAP),
                "weights": str(data / WEIGHTS),
            }
        )
    )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("evaluate", help="re-run the test evaluation of a logged or registered model")
    ev.add_argument(
        "--model-uri",
        required=True,
        help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/model or a `registry download` folder",
    )
    ev.add_argument("--dataset", default=None, help="dataset to evaluate on (must be the model's)")
    ev.add_argument("--source", default=None, help="mirror directory or base URL")
    ev.add_argument("--device", default=None, help="auto | cpu | cuda")
    add_tracking_args(ev)
    ev.set_defaults(func=cmd_evaluate)

    rec = sub.add_parser("recommend", help="top-k next items for a user or an item history")
    rec.add_argument(
        "--model-uri",
        required=True,
        help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/model or a `registry download` folder",
    )
    who = rec.add_mutually_exclusive_group()
    who.add_argument("--user", default=None, help="raw user id of the model's dataset")
    who.add_argument("--items", default=None, help="comma-separated raw item ids, oldest first")
    rec.add_argument("--k", type=int, default=10, help="how many items (1 .. catalogue minus seen items)")
    rec.add_argument("--source", default=None)
    rec.add_argument("--device", default=None)
    add_tracking_args(rec)
    rec.set_defaults(func=cmd_recommend)

    reg = sub.add_parser("registry", help="registered models")
    reg_sub = reg.add_subparsers(dest="registry_command", required=True)
    ls = reg_sub.add_parser("list", help="registered models, versions, aliases and validation metrics")
    add_tracking_args(ls)
    ls.set_defaults(func=cmd_registry_list)
    dl = reg_sub.add_parser(
        "download",
        help="copy a registered model's files (weights, config, item map) into a "
        "new or empty folder; nothing is loaded",
    )
    dl.add_argument("--name", required=True)
    g = dl.add_mutually_exclusive_group(required=True)
    g.add_argument("--alias")
    g.add_argument("--version")
    dl.add_argument("--dst", required=True)
    add_tracking_args(dl)
    dl.set_defaults(func=cmd_registry_download)
