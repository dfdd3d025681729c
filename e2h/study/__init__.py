"""The easy-to-hard study as a pipeline: its plan (stages as `e2h` commands), the runner, and the report.
The report imports the plan; nothing imports the report back."""
