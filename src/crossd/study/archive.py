"""A study's small records, copied without checkpoints (:func:`archive`), so that ``summarise_only`` remakes the
tables on a machine that has no run folder, and :func:`restore` continues a seed there."""

from __future__ import annotations

import json
from pathlib import Path

from crossd.io import save_text
from crossd.machine import machine_differences
from crossd.results import Results
from crossd.study.config import StudyConfig
from crossd.study.records import seed_kernel_energy


def _finished(folder: Path) -> bool:
    results = folder / "results.json"
    return results.is_file() and Results.from_json(json.loads(results.read_text())).complete


def archive(config: StudyConfig, output_dir: Path, target: Path, seeds: list[int]) -> None:
    """Copy the records of ``seeds`` from ``output_dir`` to ``target``, in the same layout: pretraining metrics
    and wall times, kernel energies, each evaluation folder's settings and its ``results.json`` once finished,
    and, until every folder of the seed (:meth:`StudyConfig.planned_folders`) has finished, the job files too, which
    :func:`restore` needs to continue the seed (they are dropped from ``target`` once the seed has finished)."""
    for seed in seeds:
        seed_dir = output_dir / f"seed{seed}"
        seed_kernel_energy(config, seed_dir)
        paths = [*seed_dir.glob("*/metrics.json"), *seed_dir.glob("*/wall_time.json"), seed_dir / "kernel_energy.json"]
        finished = {folder: _finished(folder) for folder in sorted(seed_dir.glob("eval*"))}
        done = all(finished.get(seed_dir / name, False) for name in config.planned_folders())
        for folder, complete in finished.items():
            paths += [folder / "settings.json", *([folder / "results.json"] if complete else [])]
            if not done:
                paths += folder.glob("jobs/*/*.json")
        if done:
            for stale in sorted((target / f"seed{seed}").glob("eval*/jobs/*/*.json")):
                stale.unlink()
        for path in sorted(p for p in paths if p.is_file()):
            save_text(path.read_text(), target / path.relative_to(output_dir))


def restore(source: Path, output_dir: Path, seed: int) -> bool:
    """Copy the archived evaluation records of ``seed`` (see :func:`archive`) into ``output_dir`` where they are
    missing, so that the evaluation runs only the jobs they lack; ``False`` (nothing copied) unless the seed's
    pretraining runs, trained again here, reproduce every archived ``metrics.json`` byte for byte (the records
    belong to the archived checkpoints, which are not kept)."""
    archived, seed_dir = source / f"seed{seed}", output_dir / f"seed{seed}"
    retrained = {path: seed_dir / path.relative_to(archived) for path in sorted(archived.glob("*/metrics.json"))}
    differ = [
        path.parent.name
        for path, again in retrained.items()
        if not again.is_file() or again.read_bytes() != path.read_bytes()
    ]
    if differ:
        print(
            f"seed {seed}: pretraining runs {differ} differ from {archived}: its records are not restored"
            " (a CPU run reproduces only with the same torch build on the same CPU capability)",
            flush=True,
        )
        return False
    for path in sorted(archived.glob("eval*/**/*.json")):
        destination = seed_dir / path.relative_to(archived)
        if not destination.exists():
            save_text(path.read_text(), destination)
    return True


def unlike_machine(source: Path, seed: int, here: dict) -> str | None:
    """Said before the pretraining of a resumed ``seed``: a line naming how the machine that made the archived
    records of ``seed`` in ``source`` (the ``machine`` its pretraining runs' ``wall_time.json`` recorded) differs
    from ``here`` (a :func:`crossd.machine.machine` record) in what decides whether the pretraining reproduces them
    (:func:`crossd.machine.machine_differences`); ``None`` when it does not differ or was not recorded."""
    for path in sorted((source / f"seed{seed}").glob("*/wall_time.json")):
        recorded = json.loads(path.read_text()).get("machine")
        differences = machine_differences(recorded, here) if recorded else []
        if differences:
            return (
                f"seed {seed}: its archived records in {source} were made on another kind of machine"
                f" ({'; '.join(differences)}): the pretraining here will likely not reproduce them, and then the"
                " seed runs from its start; a machine like that one continues it"
            )
    return None
