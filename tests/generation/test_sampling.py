"""Sampling's text handling: completions are cut at the earliest stop string."""

from e2h.generation.sampling import cut_at_stop


def test_cut_at_stop_takes_the_earliest_stop_string():
    assert cut_at_stop("1+2=3\n\n# Answer\n\n3\n\n\n# Question\n\nnext", ("# Question", "\n\n\n")) == (
        "1+2=3\n\n# Answer\n\n3", True)
    assert cut_at_stop("no stop here", ("# Question",)) == ("no stop here", False)
