"""``ragtrail reconcile`` and ``ragtrail webhook``: keep the registry's ``@production`` and the Qdrant alias together.

    ragtrail reconcile                       # every registered product; the registry wins
    ragtrail reconcile --product handbook --prefer store --dry-run
    RAGTRAIL_WEBHOOK_SECRET=… ragtrail webhook --url http://airflow:8080/ragtrail/hooks/mlflow

``reconcile`` exits 0 when both sides agree at the end, 1 when drift could not be repaired.
"""

from __future__ import annotations

import argparse
import json
import sys

from ragtrail.cli.shell import table
from ragtrail.core import env_kit


def cmd_reconcile(args) -> int:
    from ragtrail.models.agreement import reconcile, registered_products
    from ragtrail.trail.client import guarded_client

    client = guarded_client()
    products = [args.product] if args.product else registered_products(client)
    results = [reconcile(p, client, None, prefer=args.prefer, dry_run=args.dry_run) for p in products]
    if args.json:
        print(json.dumps(results, default=str))
    else:
        rows = [[r["product"], r["registry"] or "-", r["store"] or "-",
                 {None: "agree", "store": "alias moved", "registry": "@production moved"}.get(r["action"], "UNRESOLVED")
                 + (" (dry run)" if args.dry_run and r["action"] else "")] for r in results]
        print(table(rows, ["product", "registry @production", "Qdrant alias", "result"]) if rows else "no registered products")
        for r in results:
            if r.get("reason"):
                print(f"{r['product']}: {r['reason']}", file=sys.stderr)
    return 1 if any(r["action"] == "unresolved" for r in results) else 0


def cmd_webhook(args) -> int:
    from ragtrail.trail.client import guarded_client
    from ragtrail.trail.registry import ensure_webhook

    secret = env_kit.WEBHOOK_SECRET.get()
    if not secret:
        print("ragtrail webhook: set RAGTRAIL_WEBHOOK_SECRET (the Airflow API server needs the same value)",
              file=sys.stderr)
        return 1
    webhook_id = ensure_webhook(guarded_client(), args.url, secret)
    print(f"webhook {webhook_id}: @production moves of ragtrail-* models are sent to {args.url}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``reconcile`` and ``webhook`` on the ``ragtrail`` parser."""
    p = sub.add_parser("reconcile", help="repair drift between the registry's @production and the Qdrant alias")
    p.add_argument("--product", "-p", help="one product (default: every registered one)")
    p.add_argument("--prefer", choices=["registry", "store"], default="registry",
                   help="which side wins when they disagree (default: registry)")
    p.add_argument("--dry-run", action="store_true", help="only report")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.set_defaults(func=cmd_reconcile)
    p = sub.add_parser("webhook", help="register the MLflow webhook that moves the alias with @production")
    p.add_argument("--url", required=True, help="the Airflow API server's /ragtrail/hooks/mlflow URL")
    p.set_defaults(func=cmd_webhook)
