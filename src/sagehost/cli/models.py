"""``sagehost models …``: the models a running server's multi-model endpoints hold, and
loading (preloading) and pinning them, through sagehost's own signed operations."""

from __future__ import annotations

import argparse
from typing import Any

from sagehost.cli.remote import print_answer


def positive_mib(text: str) -> float:
    """An argparse type: a number of MiB above 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of MiB above 0, not {text!r}")
    return value


def add_parser(commands: Any) -> None:
    """Add ``models`` to the CLI's subcommands (``commands`` is argparse's subparsers action)."""
    models = commands.add_parser(
        "models", help="load, pin and list the models of a running server's multi-model endpoints"
    )
    models.add_argument(
        "--url", default="http://127.0.0.1:8080", help="the server (default %(default)s)"
    )
    models.add_argument("--region", default="us-east-1", help="region to sign for")
    actions = models.add_subparsers(dest="models_command", required=True)
    load = actions.add_parser("load", help="load models now (and keep them loaded with --pin)")
    unpin = actions.add_parser("unpin", help="let pinned models be evicted again")
    listing = actions.add_parser("list", help="what each instance holds, and what is on disk")
    for action in (load, unpin, listing):
        action.add_argument("endpoint")
        action.add_argument("--variant", help="only this production variant")
    for action in (load, unpin):
        action.add_argument("target_models", nargs="+", metavar="TARGET_MODEL")
    load.add_argument("--pin", action="store_true", help="never evict these models")


def run(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"EndpointName": args.endpoint}
    if args.variant:
        params["TargetVariant"] = args.variant
    if args.models_command == "list":
        target = "SageHost.ListLoadedModels"
    else:
        params["TargetModels"] = args.target_models
        target = "SageHost.LoadModels" if args.models_command == "load" else "SageHost.UnpinModels"
        if args.models_command == "load":
            params["Pin"] = args.pin
    answer = print_answer(args.url, target, params, args.region)
    if answer is None:
        return 1
    failed = [m for m in answer.get("Models", []) if m.get("Status") == "Failed"]
    return 1 if failed else 0
