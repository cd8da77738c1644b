"""``wedding-engine services up|down|status``: the local Kafka broker and PostgreSQL cluster.

``up`` and ``status`` print shell-eval-able lines, so a script can do
``eval "$(wedding-engine services up)"`` and then use ``$KAFKA_BOOTSTRAP`` and ``$POSTGRES_DSN``;
``down`` prints what it stopped (``# stopped kafka (pid 4242), ...``) or ``# nothing running``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from stream_app.devservices import manager
from stream_app.devservices.common import ServiceError


def build_parser(prog: str = "wedding-engine services") -> argparse.ArgumentParser:
    """Return the argument parser of the ``services`` command."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Start, stop or inspect the local Kafka broker and PostgreSQL."
    )
    parser.add_argument(
        "action",
        choices=["up", "down", "status"],
        help="up: start what is not running; down: stop both; status: exit 0 if both run, else 3",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="folder for data, logs and services.json (default: $WEDDING_STATE_DIR or ./.state)",
    )
    return parser


def _settings_lines(settings: manager.ServiceSettings) -> list[str]:
    return [
        f"KAFKA_BOOTSTRAP={shlex.quote(settings.kafka_bootstrap)}",
        f"POSTGRES_DSN={shlex.quote(settings.app_dsn)}",
        f"POSTGRES_SYSTEM_DSN={shlex.quote(settings.system_dsn)}",
        f"POSTGRES_OWNER_DSN={shlex.quote(settings.owner_dsn)}",
        f"REDIS_URL={shlex.quote(settings.redis_url)}",
        f"WEDDING_REDIS_URL={shlex.quote(settings.redis_url)}",
    ]


def main(argv: list[str] | None = None) -> int:
    """Run ``up``, ``down`` or ``status`` and print the outcome.

    Args:
        argv: the arguments after ``services``; ``sys.argv[1:]`` when ``None``.

    Returns:
        0 on success; 1 when a service failed (the reason goes to stderr); for ``status``,
        3 when not both services run.
    """
    args = build_parser().parse_args(argv)
    state_dir: Path | None = args.state_dir
    try:
        if args.action == "up":
            print("\n".join(_settings_lines(manager.up(state_dir))))
            return 0
        if args.action == "down":
            stopped = manager.down(state_dir)
            where = (state_dir or manager.default_state_dir()).absolute()
            print(
                f"# stopped {', '.join(stopped)} (state folder {where})"
                if stopped
                else f"# nothing running (state folder {where})"
            )
            return 0
        found = manager.status(state_dir)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    lines = [
        f"KAFKA_RUNNING={'yes' if found.kafka_running else 'no'}",
        f"POSTGRES_RUNNING={'yes' if found.postgres_running else 'no'}",
        f"REDIS_RUNNING={'yes' if found.redis_running else 'no'}",
    ]
    if found.settings is not None and found.all_running:
        lines += _settings_lines(found.settings)
    print("\n".join(lines))
    return 0 if found.all_running else 3


if __name__ == "__main__":
    sys.exit(main())
