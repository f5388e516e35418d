"""``python -m sfrs.eval`` / ``torchrun --nproc_per_node N -m sfrs.eval``: same as ``sfrs-eval``."""
from sfrs.cli.eval import main

if __name__ == "__main__":
    main()
