"""The command line, and the only place with command-line code: `e2h fit|validate|test|predict` (LightningCLI,
`main`), `e2h data ...` (`data` and one module per tool), `e2h export` (`export`) and the study (`study`,
behind ``bin/study.py``)."""
