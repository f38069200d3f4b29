"""`atoll ab`: the A/B statistics engine from the command line.

These commands compute locally with `atoll.abtest.stats`, the same engine that answers
`POST /api/v1/stats/analyze` and `/power`: no server and no token are needed, and the
numbers are identical. The engine is imported inside the commands so `atoll --help`
stays fast.

Exit codes: 0 when the analysis ran (whatever the verdict: `ab analyze` is a readout,
not a gate), 2 for invalid input (an unreadable file, bad JSON, a field that fails
validation; the message names the field).
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from atoll.cli.output import JsonFlag, console, emit_json, fail

if TYPE_CHECKING:
    from atoll.abtest.stats import AnalysisResult, Comparison, MetricResult, PowerResult

ab_app = typer.Typer(
    help="A/B statistics: analyse results, size a test (computed locally; same engine as the API).",
    no_args_is_help=True,
)

VERDICT_STYLE = {
    "ship": ("green", "ship"),
    "dont_ship": ("red", "don't ship"),
    "keep_running": ("yellow", "keep running"),
    "invalid": ("magenta", "invalid"),
}


class MetricType(StrEnum):
    binary = "binary"
    mean = "mean"


class Method(StrEnum):
    fixed = "fixed"
    sequential = "sequential"
    bayesian = "bayesian"


class Direction(StrEnum):
    increase = "increase"
    decrease = "decrease"


class Correction(StrEnum):
    holm = "holm"
    bh = "bh"
    none = "none"


def _read_input(file: str) -> str:
    if file == "-":
        return sys.stdin.read()
    try:
        return Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"FILE: cannot read {file}: {exc}", 2)


def _verdict(verdict: str) -> str:
    style, label = VERDICT_STYLE.get(verdict, ("white", verdict))
    return f"[bold {style}]{label}[/]"


def _num(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.4g}" if signed else f"{value:.4g}"


def _pct(value: float | None, *, signed: bool = True) -> str:
    if value is None:
        return "—"
    return f"{value * 100:+.2f}%" if signed else f"{value * 100:.2f}%"


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def _with_ci(estimate: str, lower: str, upper: str, has_ci: bool) -> str:
    return f"{estimate} [{lower}, {upper}]" if has_ci else estimate


def _comparison_row(c: Comparison, bayesian: bool) -> list[str]:
    absolute = _with_ci(
        _num(c.absolute_lift, signed=True),
        _num(c.absolute_ci.lower if c.absolute_ci else None, signed=True),
        _num(c.absolute_ci.upper if c.absolute_ci else None, signed=True),
        c.absolute_ci is not None,
    )
    relative = _with_ci(
        _pct(c.relative_lift),
        _pct(c.relative_ci.lower if c.relative_ci else None),
        _pct(c.relative_ci.upper if c.relative_ci else None),
        c.relative_ci is not None,
    )
    evidence = (
        [_pct(c.chance_to_beat_control, signed=False), _pct(c.expected_loss, signed=False)]
        if bayesian
        else [_p(c.p_value), _p(c.adjusted_p_value)]
    )
    return [c.arm, absolute, relative, *evidence, _verdict(c.verdict), "\n".join(c.reasons)]


def _metric_table(metric: MetricResult, result: AnalysisResult) -> Table:
    bayesian = result.method == "bayesian"
    tags = [metric.type] + (["guardrail"] if metric.guardrail else [])
    tags += [] if metric.higher_is_better else ["lower is better"]
    level = metric.comparisons[0].ci_level if metric.comparisons else 1 - result.alpha
    control = next((a for a in metric.arms if a.arm == result.control), None)
    caption = f"{level * 100:.4g}% intervals"
    if control is not None:
        caption = f"control: n={control.n}, mean={_num(control.mean)}; {caption}"
    view = Table(
        title=f"[bold]{metric.name}[/] ({', '.join(tags)})",
        caption=caption + "".join(f"\n{n}" for n in metric.notes),
        header_style="bold",
        title_justify="left",
    )
    for header in ("arm", "absolute lift [CI]", "relative lift [CI]"):
        view.add_column(header, no_wrap=header == "arm")
    if bayesian:
        view.add_column("chance to beat control")
        view.add_column("expected loss")
    else:
        view.add_column("p")
        view.add_column("adjusted p")
    view.add_column("verdict", no_wrap=True)
    view.add_column("reasons")
    for c in metric.comparisons:
        view.add_row(*_comparison_row(c, bayesian))
    return view


def _print_analysis(result: AnalysisResult) -> None:
    srm = result.srm
    if srm.mismatch:
        console.print(f"[bold red]SRM: sample ratio mismatch, results invalid[/] — {srm.reason}")
    elif srm.p_value is None:
        console.print(f"[yellow]SRM: not checked[/] — {srm.reason}")
    else:
        counts = ", ".join(f"{arm} {n}" for arm, n in srm.observed.items())
        console.print(f"[green]SRM: ok[/] (p = {_p(srm.p_value)}; {counts})")
    console.print(
        f"method {result.method}, alpha {result.alpha}, hypothesis {result.hypothesis.type}; "
        f"{result.correction_note}",
        style="dim",
    )
    for metric in result.metrics:
        console.print()
        console.print(_metric_table(metric, result))
    console.print()
    for d in result.decisions:
        reasons = "; ".join(d.reasons)
        console.print(
            f"[bold]decision[/] {d.arm} vs {result.control}: {_verdict(d.verdict)}"
            + (f" — {reasons}" if reasons else "")
        )


@ab_app.command("analyze")
def analyze(
    file: Annotated[
        str, typer.Argument(help="AnalysisRequest JSON file (docs/statistics.md), or - for stdin")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Analyse an A/B test from per-arm summary statistics (computed locally; same engine as the API).

    Prints the SRM check, per metric and treatment arm the lifts with intervals, p-values
    and the verdict, and a decision per arm. Exits 0 whatever the verdict (a readout,
    not a gate); 2 when the input is invalid, naming the field.
    """
    from atoll.abtest.stats import AnalysisRequest
    from atoll.abtest.stats import analyze as run_analysis
    from atoll.abtest.stats.inputs import StatsInputError, load_request

    text = _read_input(file)
    try:
        request = load_request(text, AnalysisRequest)
    except StatsInputError as exc:
        fail(str(exc), 2)
    result = run_analysis(request)
    if as_json:
        emit_json(result.model_dump(mode="json"))
    else:
        _print_analysis(result)


def _print_power(result: PowerResult, arms: int) -> None:
    def count(value: int | None) -> str:
        return f"{value:,}" if value is not None else "—"

    view = Table(show_header=False, box=None, pad_edge=False)
    view.add_column(style="bold")
    view.add_column()
    view.add_row("units per arm", count(result.n_per_arm))
    view.add_row(f"total units ({arms} arms)", count(result.n_total))
    view.add_row("MDE absolute", _num(result.mde_absolute, signed=True))
    view.add_row("MDE relative", _pct(result.mde_relative))
    view.add_row("power", _pct(result.achieved_power, signed=False))
    if result.sequential_inflation is not None:
        view.add_row("sequential inflation", f"x{result.sequential_inflation:.3f}")
    view.add_row(
        "alpha",
        f"{result.alpha} ({result.alpha_per_comparison:.4g} per comparison), method {result.method}",
    )
    console.print(view)
    for note in result.notes:
        console.print(f"note: {note}", style="dim")


@ab_app.command("power")
def power(
    metric_type: Annotated[MetricType, typer.Option(help="binary (a rate) or mean")],
    baseline: Annotated[float, typer.Option(help="Control conversion rate (binary) or mean")],
    std: Annotated[float | None, typer.Option(help="Per-unit standard deviation (mean metrics)")] = None,
    mde: Annotated[
        float | None,
        typer.Option(help="Minimum detectable effect: solve the sample size; negative for a drop"),
    ] = None,
    n_per_arm: Annotated[
        int | None, typer.Option(help="Units per arm: solve the MDE (with --mde: power)")
    ] = None,
    relative: Annotated[
        bool,
        typer.Option("--relative/--absolute", help="MDE as a fraction of the baseline, or in metric units"),
    ] = True,
    direction: Annotated[
        Direction | None,
        typer.Option(
            help="Without --mde: solve the MDE of a rise or a drop (default: from the sign of --mde)"
        ),
    ] = None,
    alpha: Annotated[float, typer.Option(help="Significance level")] = 0.05,
    target_power: Annotated[float, typer.Option("--power", help="Target power")] = 0.8,
    arms: Annotated[int, typer.Option(help="Number of arms including control")] = 2,
    method: Annotated[
        Method, typer.Option(help="fixed horizon, sequential (always valid) or bayesian")
    ] = Method.fixed,
    correction: Annotated[
        Correction, typer.Option(help="With more than 2 arms: split alpha (holm, bh) or not (none)")
    ] = Correction.holm,
    sequential_tuning: Annotated[
        float | None,
        typer.Option(help="Sequential: total n where the bound is tightest (default: the computed n)"),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Sample size, MDE or power of a test (computed locally; same engine as the API).

    Give --mde for the sample size per arm, --n-per-arm for the MDE, or both for the
    achieved power. A negative --mde sizes the test for a drop (for a rate, a drop needs
    a different n than a rise). Example: atoll ab power --metric-type binary --baseline 0.1 --mde -0.05
    """
    from pydantic import ValidationError

    from atoll.abtest.stats import PowerRequest
    from atoll.abtest.stats import power as run_power
    from atoll.abtest.stats.inputs import describe

    body: dict[str, Any] = {
        "metric_type": metric_type.value,
        "baseline": baseline,
        "std": std,
        "mde": mde,
        "mde_type": "relative" if relative else "absolute",
        "direction": direction.value if direction else None,
        "n_per_arm": n_per_arm,
        "alpha": alpha,
        "power": target_power,
        "arms": arms,
        "method": method.value,
        "correction": correction.value,
        "sequential_tuning": sequential_tuning,
    }
    try:
        request = PowerRequest.model_validate(body)
    except ValidationError as exc:
        fail(describe(exc), 2)
    result = run_power(request)
    if as_json:
        emit_json(result.model_dump(mode="json"))
    else:
        _print_power(result, arms)


def register(app: typer.Typer) -> None:
    app.add_typer(ab_app, name="ab")
