"""Train HYFA with 1 or 2 CPU processes and record which donors each process trained on (for test_ddp.py).

Run as a script (Lightning's ``ddp`` runs this script again for each further process, so the
training lives here rather than in the pytest process)::

    python tests/_ddp_train.py OUT_DIR DEVICES BATCH_SIZE EPOCHS

writes ``OUT_DIR/result.json`` (the validation loss of the trained model in the calling process,
its training and validation donors) and ``OUT_DIR/batches-rank{r}.jsonl`` (one line per training
minibatch: epoch and donor indices).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path

from hyfa_testing import TINY as HYFA_TINY
from lightning.pytorch.callbacks import Callback

N_DONORS, N_TRAIN, N_VAL = 60, 40, 10
TINY = {**HYFA_TINY, "dropout_rate": 0.0}


class RecordDonors(Callback):
    """Append each training minibatch's donor indices, by epoch, to a file per process (rank)."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        from hyfa._constants import REGISTRY_KEYS

        donors = batch[REGISTRY_KEYS.INDICES_KEY].view(-1).tolist()
        path = Path(self.out_dir) / f"batches-rank{trainer.global_rank}.jsonl"
        with path.open("a") as f:
            f.write(json.dumps({"epoch": trainer.current_epoch, "donors": donors}) + "\n")


def main(out_dir: str, devices: int, batch_size: int, epochs: int) -> None:
    """Train and write the records (see the module docstring)."""
    import numpy as np
    import scvi
    import torch

    import hyfa

    torch.set_num_threads(1)
    scvi.settings.verbosity = logging.WARNING
    scvi.settings.seed = 0
    warnings.filterwarnings("ignore", message=r".*(pull_on_update|Cannot join columns).*")
    mdata, _ = hyfa.data.simulate(n_donors=N_DONORS, n_tissues=4, n_genes=6, missing_rate=0.4, seed=1)
    names = list(mdata.obs_names)
    train, val = names[:N_TRAIN], names[N_TRAIN : N_TRAIN + N_VAL]
    hyfa.HYFA.setup_mudata(mdata)
    model = hyfa.HYFA(mdata, **TINY)
    # "ddp": Lightning starts the other process by running this script again (LOCAL_RANK=1), so
    # nothing is pickled. ("ddp_spawn" would pickle the model, and scvi-tools' MuData fields hold a
    # lambda, which does not pickle.)
    strategy = {"strategy": "ddp"} if devices > 1 else {}
    model.train(
        max_epochs=epochs,
        train_donors=train,
        validation_donors=val,
        batch_size=batch_size,
        lr=1e-2,
        accelerator="cpu",
        devices=devices,
        enable_progress_bar=False,
        callbacks=[RecordDonors(out_dir)],
        calibration_folds=0,  # calibrated on the validation donors in both runs (no cross-fitting under DDP)
        **strategy,
    )
    if os.environ.get("LOCAL_RANK", "0") != "0":
        return  # the other process: its minibatches are recorded, the result comes from rank 0
    # error of the trained weights (those the calling process holds) on the validation donors:
    # each of their tissues predicted from their other tissues
    errors = []
    for tissue in model.tissues:
        donors = [d for d in val if d in set(mdata[tissue].obs_names)]
        pred = model.get_imputed_expression(target_tissues=tissue, donors=donors)
        truth = mdata[tissue][pred.obs_names, list(pred.var_names)].X
        errors.append(np.mean((np.asarray(pred.X) - np.asarray(truth)) ** 2))
    result = {
        "train_indices": np.asarray(model.train_indices).tolist(),
        "validation_indices": np.asarray(model.validation_indices).tolist(),
        "validation_mse": float(np.mean(errors)),
        "initial_mse": float(np.mean([np.var(np.asarray(mdata[t].X)) for t in model.tissues])),
    }
    (Path(out_dir) / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
