"""``python -m sfrs.cli.train_worker <sfrs-train arguments>``: one run of a parallel
``sfrs-sweep``, as ``sfrs-train`` with torch's thread count set from ``OMP_NUM_THREADS``
(the run's share of the cores)."""
import os

if __name__ == "__main__":
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    from sfrs.cli.train import main

    main(prog_name="sfrs-train")
