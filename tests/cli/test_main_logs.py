"""e2h's own INFO messages (the counts README promises) are shown by the command, one quiet line each."""

import logging

from e2h.cli.main import show_e2h_logs


def test_e2h_info_messages_reach_stderr_once(capsys):
    show_e2h_logs()
    show_e2h_logs()  # idempotent: one handler, one line per message
    logging.getLogger("e2h.training.callbacks").info("samples: 3 already complete in x.jsonl; skipping them")
    logging.getLogger("e2h.data.records").debug("not shown")
    assert capsys.readouterr().err == "e2h: samples: 3 already complete in x.jsonl; skipping them\n"
