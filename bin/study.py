#!/usr/bin/env python
"""The easy-to-hard study end to end (see e2h/study/ and e2h/cli/study.py):

    python bin/study.py --profile tiny --jobs 2
    python bin/study.py --profile math --model MODEL --prm800k PRM800K_TRAIN.jsonl
"""

from e2h.cli.study import main

if __name__ == "__main__":
    raise SystemExit(main())
