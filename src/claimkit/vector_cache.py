"""Trained steering vectors through the artifact cache, keyed like adapters.

A vector is built once per (base model, training examples, regularisation examples,
starting vector, settings, seed) and kept as a float32 .npy beside a json of its
training record, so reruns and other xdist workers reuse it and a change of the
training code (`claimkit.steering`, registered in `claimkit.fingerprint`) rebuilds it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from claimkit.experiment import examples_hash
from claimkit.lm.data import Example
from claimkit.steering import VectorConfig

if TYPE_CHECKING:
    import numpy as np

    from claimkit.experiment import Experiment

VECTOR_FILE = "vector.npy"
RECORD_FILE = "training.json"


@dataclass(frozen=True)
class TrainedVector:
    """A cached vector and how its training went (what reports show)."""

    name: str
    seed: int
    vector: "np.ndarray"  # [d] float32
    steps: int
    seconds: float
    first_loss: float
    final_loss: float
    final_kl: float | None
    entry: str  # the cache entry's name: what downstream keys cite

    @property
    def norm(self) -> float:
        import numpy as np

        return float(np.linalg.norm(self.vector))


def cached_vector(
    experiment: "Experiment",
    *,
    name: str,
    examples: Sequence[Example],
    config: VectorConfig,
    seed: int,
    regularise_on: Sequence[Example] = (),
    init: "TrainedVector | None" = None,
) -> TrainedVector:
    """`claimkit.steering.train_vector` on the experiment's base model, built once and cached."""
    import numpy as np

    parts = {
        **experiment.base_parts(), "vector": "steering", "config": asdict(config), "seed": int(seed),
        "data": examples_hash(examples), "n": len(examples),
        "regularise_on": examples_hash(regularise_on) if config.kl_weight > 0 else None,
        "init": init.entry if init is not None else None,
    }

    def build(out: Path) -> None:
        from claimkit.steering import train_vector

        result = train_vector(experiment.base, examples, config=config, seed=seed, regularise_on=regularise_on,
                              init=None if init is None else init.vector, progress=experiment.progress)
        np.save(out / VECTOR_FILE, result.vector.numpy().astype(np.float32))
        record = {"steps": result.steps, "seconds": result.seconds, "first_loss": result.losses[0],
                  "final_loss": result.final_loss, "final_kl": result.final_kl}
        (out / RECORD_FILE).write_text(json.dumps(record, indent=2))

    where = experiment.cache.get_or_build("vector", parts, build,
                                          description=f"{experiment.profile.name} {name} seed {seed} steering vector")
    record = json.loads((where / RECORD_FILE).read_text())
    return TrainedVector(name=name, seed=int(seed), vector=np.load(where / VECTOR_FILE), steps=int(record["steps"]),
                         seconds=float(record["seconds"]), first_loss=float(record["first_loss"]),
                         final_loss=float(record["final_loss"]), final_kl=record["final_kl"], entry=where.name)

