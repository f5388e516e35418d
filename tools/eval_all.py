#!/usr/bin/env python
"""``sfrs-eval-all`` as a script; see ``sfrs/cli/eval_all.py``."""
from sfrs.cli.eval_all import main

if __name__ == "__main__":
    main()
