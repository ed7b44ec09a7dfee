"""The ``simcluster`` command line.

Each sub-command lives in its own module under ``simcluster.cli`` and is imported lazily, so that
``simcluster run`` does not pay for the imports of ``calibrate`` or ``sweep``.

Exit status: 0 success; 2 an error the user can fix (:class:`simcluster.errors.UserError`, bad
usage), printed as one line; 1 a bug (traceback).
"""

from __future__ import annotations

import importlib
import sys

import click

from simcluster import __version__
from simcluster.errors import UserError

# command name -> (module, attribute, one-line help)
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("simcluster.cli.run", "run", "Replay a scenario (the built-in default when none is given)."),
    "trace": ("simcluster.cli.trace", "trace", "Workload statistics and conversion between trace formats."),
    "cost": ("simcluster.cli.cost", "cost", "Latency of one step of one configuration, broken down."),
    "calibrate": ("simcluster.cli.calibrate", "calibrate", "Fit cost models to measured op latencies."),
    "bench": ("simcluster.cli.bench", "bench", "Simulated vllm bench serve/throughput/latency (and SGLang, TRT-LLM)."),
    "validate": ("simcluster.cli.validate", "validate", "Predict measured deployments (silicon_sample CSV) and report the error."),
    "sweep": ("simcluster.cli.sweep", "sweep", "Evaluate a design space (resumable); points and Pareto frontier."),
    "plan": ("simcluster.cli.plan", "plan", "Cheapest deployment that meets SLOs at a given traffic."),
    "report": ("simcluster.cli.report", "report", "Plots (PNG/SVG) and an HTML page of a sweep or a run."),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        module, attr, _ = _COMMANDS[name]
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                return None
            raise
        return getattr(mod, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, _COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="simcluster")
def cli() -> None:
    """simcluster: a discrete-event simulator of LLM inference clusters."""


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the CLI and maps user errors to exit status 2 with one clear line."""
    try:
        cli.main(args=argv, prog_name="simcluster", standalone_mode=False)
    except UserError as exc:
        click.echo(f"simcluster: error: {exc}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("simcluster: aborted", err=True)
        return 130
    except click.UsageError as exc:  # unknown option, missing argument, bad value: one line
        cmd = exc.ctx.command_path if exc.ctx is not None else "simcluster"
        click.echo(f"simcluster: error: {exc.format_message()} (see '{cmd} --help')", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"simcluster: error: {exc.format_message()}", err=True)
        return 2
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
