"""``python -m sfrs.train`` / ``torchrun --nproc_per_node N -m sfrs.train``: same as ``sfrs-train``."""
from sfrs.cli.train import main

if __name__ == "__main__":
    main()
