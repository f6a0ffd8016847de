"""Segmentation's ``results.md``: mean Dice and Dice per class of every method (mean ± std over folds)."""

from __future__ import annotations

from pathlib import Path

from crossd.report.tables import loading_note, mean_std, reference_method


def segmentation_markdown(results: dict) -> str:
    """The ``results.md`` text: mean Dice and Dice per class (mean ± population std over folds)."""
    args, data = results["args"], results["data"]
    classes, reference = data["classes"][1:], reference_method(results)
    lines = [
        f"# Segmentation of `{Path(str(args['data'])).name}`",
        "",
        f"Protocol **{args['protocol']}**: {args['folds']}-fold cross-validation x {args['repeats']} repeat(s), "
        f"{args['epochs']} epoch(s), batch {args['batch_size']}, lr {args['lr']:g}, UNet3D decoder "
        f"{tuple(args['decoder_channels'])}, best epoch by validation mean Dice, seed {args['seed']}.",
        f"Data: {data['samples']} volumes of shape {tuple(data['shape'])}, classes {', '.join(data['classes'])}.",
        "",
        "| Method | Mean Dice | " + " | ".join(f"Dice {c}" for c in classes) + f" | Folds | Wilcoxon vs {reference} |",
        "|---|---|" + "---|" * (len(classes) + 2),
    ]
    for method in results["results"]:
        if not method["folds"]:
            continue
        cells = [mean_std(method["dice_mean_mean"], method["dice_mean_std"])]
        cells += [mean_std(method[f"dice_{c}_mean"], method[f"dice_{c}_std"]) for c in classes]
        comparison = results["comparisons"].get(method["method"])
        p = "(reference)" if method["method"] == reference else "–"
        if comparison is not None:
            p = f"{comparison['p_value']:.3g}" if comparison["p_value"] is not None else f"– ({comparison['note']})"
        lines.append(f"| {method['method']} | " + " | ".join(cells) + f" | {len(method['folds'])} | {p} |")
    lines += ["", "Dice in percent (background excluded), mean ± population std over folds.", ""]
    lines += ["## How each encoder was loaded", ""]
    lines += [f"- **{m['method']}**: {loading_note(m)}; fresh UNet3D decoder." for m in results["results"]]
    return "\n".join(lines) + "\n"
