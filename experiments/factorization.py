"""Experiment 2: factorization of a grid from data (thesis: case14 sandbox, seed 29)."""

from __future__ import annotations

import json

from clustering.power_grid.__main__ import FactorizeConfig, factorize
from experiments.runs import Run, markdown_table


def run(run: Run, progress: bool = True) -> None:
    """Run each configured variant (ours, the thesis route) and compare their clusters."""
    cfg = run.cfg
    rows = []
    for variant in cfg["variant"]:
        name = variant["name"]
        out = run.root / name
        options = {**cfg["pipeline"], **{k: v for k, v in variant.items() if k != "name"}}
        config = FactorizeConfig.from_mapping(
            {**options, "seed": cfg["seed"], "out": str(out), "progress": progress},
            source=f"{cfg.get('_source', 'config')} [pipeline] + variant {name}",
        )
        with run.stage(f"{name}: collect + MI + factorize"):
            factorize(config)
        summary = json.loads((out / "summary.json").read_text())
        agree = summary["agreement"]
        row = {
            "variant": name,
            "mode": summary["mode"],
            "method": summary["method"],
            "clusters": len(summary["clusters"]),
            "ARI subs vs thesis": agree.get("thesis", {}).get("ari_substations", float("nan")),
            "ARI lines vs thesis": agree.get("thesis", {}).get("ari_lines", float("nan")),
            "ARI subs vs Louvain": agree["louvain"]["ari_substations"],
            "ARI subs vs operator areas": (summary.get("areas") or {})
            .get("method", {})
            .get("ari", float("nan")),
            "min samples/substation": min(summary["samples"].values()),
        }
        rows.append(row)
        run.numbers[name] = {
            "clusters": summary["clusters"],
            "agreement": agree,
            "samples": summary["samples"],
        }
        figures = [out / f for f in summary["figures"] if (out / f).suffix == ".png"]
        run.section(
            f"Variant '{name}' ({summary['mode']} mode, {summary['method']})",
            f"Clusters: {summary['clusters']}\n\nSamples per substation: {summary['samples']}. "
            f"Full summary: `{name}/summary.md`.",
            figures,
        )
    text = markdown_table(rows, ".2f")
    base = next((r["agreement"].get("louvain_vs_thesis") for r in run.numbers.values()), None)
    if base:
        run.numbers["louvain_vs_thesis"] = base
        text = (
            f"Topology-only baseline (Louvain communities of the substation graph, seed "
            f"{cfg['seed']}) vs the partition the thesis trained on: ARI {base['ari_substations']:.2f} "
            f"(substations), {base['ari_lines']:.2f} (lines). Data-driven variants:\n\n{text}"
        )
    run.sections.insert(0, ("Agreement", text, []))
