"""A sweep's results as tables (Markdown) and figures (PNG): mean and spread over seeds.

Accuracy, κ and referable AUC are the test metrics of each run's kept round (chosen on
validation, as `model.pt` is); the final round's test accuracy is shown beside them. ε is the
largest reported over the seeds, rounded up, with its δ and accountant.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

from edge_client.fileio import atomic_write  # noqa: E402
from edge_client.privacy_figures import epsilon_str  # noqa: E402
from trainer.config import PRIVATE_MODES  # noqa: E402
from trainer.sweep.plan import CEILINGS  # noqa: E402

# Seconds per Flower round with SecAgg+ and TLS, `--fast` (README "Federation", Speed table,
# benchmarks/bench_federation.py on this 2-core VM): nodes -> s/round. Compute is extra.
FLOWER_SECONDS_PER_ROUND = {3: 3.0, 10: 8.8}
_COLOURS = {"central": "#7f7f7f", "central-dp": "#1f77b4", "fedavg": "#2ca02c",
            "fl-parallel-dp": "#ff7f0e", "dopamine": "#d62728", "body": "#000000"}
_METRICS = ("test_accuracy", "test_kappa", "test_referable_auc", "final_test_accuracy")


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarise(rows: list[dict]) -> dict[tuple, dict]:
    """(mode, target ε, T) -> {metric: (mean, sd)}, n, seeds, worst ε, σ, seconds; body under ("body", None, None)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["mode"], row.get("target_epsilon"), row.get("rounds"))].append(row)
    summary = {}
    for key, members in groups.items():
        entry = {m: _stats([r.get(m) for r in members]) for m in _METRICS}
        epsilons = [r["epsilon"] for r in members if r.get("epsilon") is not None]
        entry.update(n=len(members), seeds=sorted(r["seed"] for r in members),
                     epsilon=max(epsilons) if epsilons else None,
                     delta=members[0].get("delta"), accountant=members[0].get("accountant"),
                     noise_multiplier=_stats([r.get("noise_multiplier") for r in members])[0],
                     sample_rate=_stats([r.get("sample_rate") for r in members])[0],
                     seconds=_stats([r.get("seconds") for r in members])[0],
                     cpu_seconds=_stats([r.get("cpu_seconds") for r in members])[0],
                     T=members[0].get("T"))
        summary[key] = entry
    return summary


def _cell(stat: tuple[float | None, float | None]) -> str:
    mean, sd = stat
    if mean is None:
        return "—"
    return f"{mean:.3f} ± {sd:.3f}" if sd is not None else f"{mean:.3f}"


def _privacy(entry: dict) -> tuple[str, str, str]:
    if entry["epsilon"] is None:
        return "∞ (no DP)", "—", "—"
    return epsilon_str(entry["epsilon"]), f"{entry['delta']:g}", str(entry["accountant"])


def _minutes(entry: dict) -> str:
    return "—" if entry["seconds"] is None else f"{entry['seconds'] / 60:.1f}"


def epsilon_table_md(rows: list[dict]) -> str:
    """The sweep table: one line per (mode, target ε), ceilings and the public body first."""
    summary = summarise(rows)
    head = ("| mode | target ε | ε (reported, max over seeds) | δ | accountant | σ | seeds | test acc | test κ "
            "| referable AUC | final-round test acc | min/run |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    body = summary.get(("body", None, None))
    if body:
        lines.append(f"| public model (no private training) | — | — | — | — | — | {body['n']} | {_cell(body['test_accuracy'])} "
                     f"| {_cell(body['test_kappa'])} | {_cell(body['test_referable_auc'])} | — | — |")
    keys = [k for k in summary if k[0] in CEILINGS] + sorted(
        (k for k in summary if k[0] in PRIVATE_MODES and k[2] is None), key=lambda k: (k[1], PRIVATE_MODES.index(k[0])))
    for key in keys:
        entry = summary[key]
        eps, delta, accountant = _privacy(entry)
        sigma = "—" if entry["noise_multiplier"] is None else f"{entry['noise_multiplier']:.3f}"
        target = "—" if key[1] is None else f"{key[1]:g}"
        lines.append(f"| {key[0]} | {target} | {eps} | {delta} | {accountant} | {sigma} | {entry['n']} "
                     f"| {_cell(entry['test_accuracy'])} | {_cell(entry['test_kappa'])} "
                     f"| {_cell(entry['test_referable_auc'])} | {_cell(entry['final_test_accuracy'])} "
                     f"| {_minutes(entry)} |")
    return "\n".join(lines) + "\n"


def rounds_table_md(rows: list[dict]) -> str:
    """The rounds table: one line per (target ε, T), with the expected Flower wall clock."""
    summary = summarise([r for r in rows if r.get("rounds") is not None or r["mode"] == "body"])
    flower = " | ".join(f"Flower, {n} nodes (min)" for n in FLOWER_SECONDS_PER_ROUND)
    head = (f"| target ε | T | q | σ | ε (reported) | δ | seeds | test acc | test κ | referable AUC "
            f"| simulator min/run | {flower} |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for key in sorted((k for k in summary if k[2] is not None), key=lambda k: (k[1], k[2])):
        entry = summary[key]
        eps, delta, _ = _privacy(entry)
        wall = " | ".join(f"{seconds * key[2] / 60:.1f}" for seconds in FLOWER_SECONDS_PER_ROUND.values())
        lines.append(f"| {key[1]:g} | {key[2]} | {entry['sample_rate']:.4f} | {entry['noise_multiplier']:.3f} "
                     f"| {eps} | {delta} | {entry['n']} | {_cell(entry['test_accuracy'])} "
                     f"| {_cell(entry['test_kappa'])} | {_cell(entry['test_referable_auc'])} | {_minutes(entry)} "
                     f"| {wall} |")
    return "\n".join(lines) + "\n"


def _band(ax, entry: dict, metric: str, colour: str, label: str, style: str) -> None:
    mean, sd = entry[metric]
    if mean is None:
        return
    ax.axhline(mean, color=colour, linestyle=style, linewidth=1.2, label=label)
    if sd:
        ax.axhspan(mean - sd, mean + sd, color=colour, alpha=0.12, linewidth=0)


def write_epsilon_png(rows: list[dict], path: str | Path, *, title: str) -> Path:
    """Test accuracy and κ against target ε (log scale), mean ± sd over seeds; ceilings and body as bands.

    Raises:
        ValueError: no private run in `rows`.
    """
    summary = summarise(rows)
    private = sorted(k for k in summary if k[0] in PRIVATE_MODES and k[2] is None)
    if not private:
        raise ValueError("rows: no private run to plot against epsilon")
    fig = Figure(figsize=(12, 5.0))
    for ax, metric, label in zip(fig.subplots(1, 2), ("test_accuracy", "test_kappa"),
                                 ("test accuracy (kept round)", "test κ, quadratic (kept round)")):
        for mode in PRIVATE_MODES:
            points = sorted((k[1], summary[k][metric]) for k in private if k[0] == mode)
            if points:
                ax.errorbar([p[0] for p in points], [p[1][0] for p in points],
                            yerr=[p[1][1] or 0.0 for p in points], marker="o", capsize=3,
                            color=_COLOURS[mode], label=mode)
        for mode in CEILINGS:
            if (mode, None, None) in summary:
                _band(ax, summary[(mode, None, None)], metric, _COLOURS[mode], f"{mode} (no DP)", "--")
        if ("body", None, None) in summary:
            _band(ax, summary[("body", None, None)], metric, _COLOURS["body"], "public model (no private data)", ":")
        ax.set_xscale("log", base=2)
        epsilons = sorted({k[1] for k in private})
        ax.set_xticks(epsilons, [f"{e:g}" for e in epsilons])
        ax.set(xlabel="target ε (δ and accountant in the table)", ylabel=label)
        ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=130))


def write_rounds_png(rows: list[dict], path: str | Path, *, title: str) -> Path:
    """Test accuracy against rounds T (log scale) at each target ε, mean ± sd; body as a band.

    Raises:
        ValueError: no rounds run in `rows`.
    """
    summary = summarise(rows)
    keys = sorted(k for k in summary if k[2] is not None)
    if not keys:
        raise ValueError("rows: no rounds run to plot")
    fig = Figure(figsize=(7.5, 4.6))
    ax = fig.subplots()
    for index, epsilon in enumerate(sorted({k[1] for k in keys})):
        points = [(k[2], summary[k]) for k in keys if k[1] == epsilon]
        ax.errorbar([p[0] for p in points], [p[1]["test_accuracy"][0] for p in points],
                    yerr=[p[1]["test_accuracy"][1] or 0.0 for p in points], marker="o", capsize=3,
                    color=f"C{index + 3}", label=f"dopamine, target ε = {epsilon:g}")
        for t, entry in points:
            ax.annotate(f"q={entry['sample_rate']:.3f}\nσ={entry['noise_multiplier']:.2f}",
                        (t, entry["test_accuracy"][0]), textcoords="offset points", xytext=(0, -26),
                        ha="center", fontsize=7)
    if ("body", None, None) in summary:
        _band(ax, summary[("body", None, None)], "test_accuracy", _COLOURS["body"], "public model (no private data)", ":")
    ax.set_xscale("log", base=2)
    ax.set_xticks([k for k in sorted({k[2] for k in keys})], [str(k) for k in sorted({k[2] for k in keys})])
    ax.set(xlabel="rounds T (q·T passes over the data fixed)", ylabel="test accuracy (kept round)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=130))
