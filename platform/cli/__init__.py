"""The `atoll` command line: the composition root.

Process commands (`up`, `server`, `worker`, `db`) run the platform; every other command
talks to a running platform through `atoll.client`, as CI does. Heavy imports stay inside
the commands so `atoll --help` stays fast.
"""

from __future__ import annotations

import typer

from atoll.cli import ab, ab_experiments, deploy, identity, monitor, processes, registry, traffic
from atoll.cli import serve as serve_command

app = typer.Typer(
    name="atoll",
    help="Atoll: models, deployments, experiments and drift, from one place.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
processes.register(app)
identity.register(app)
ab.register(app)
ab_experiments.register(app)
registry.register(app)
deploy.register(app)
traffic.register(app)
monitor.register(app)
serve_command.register(app)
