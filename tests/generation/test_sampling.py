"""Sampling's text handling: completions are cut at the earliest stop string."""

from e2h.generation.sampling import cut_at_stop


def test_cut_at_stop_takes_the_earliest_stop_string():
    assert cut_at_stop("1+2=3\n\n# Answer\n\n3\n\n\n# Question\n\nnext", ("# Question", "\n\n\n")) == (
        "1+2=3\n\n# Answer\n\n3", True)
    assert cut_at_stop("no stop here", ("# Question",)) == ("no stop here", False)


def test_a_completion_is_clipped_only_when_it_ran_to_the_budget(char_tok):
    from e2h.generation.sampling import _to_completion

    ids = lambda text: char_tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    eos, stop = char_tok.eos_token_id, ("\n\n\n",)
    # ran to the budget: no EOS, no stop string (a cut solution, whatever its text says)
    assert _to_completion(ids("1+2=3 3+4"), char_tok, stop).clipped
    # ended by EOS (4 characters + EOS = 5 tokens), then padding: not clipped
    ended = _to_completion(ids("1+2=") + [eos, eos], char_tok, stop)
    assert (ended.text, ended.num_tokens, ended.clipped) == ("1+2=", 5, False)
    # ended by a stop string within the budget: not clipped, the text cut before it
    stopped = _to_completion(ids("3\n\n\nQ"), char_tok, stop)
    assert (stopped.text, stopped.clipped) == ("3", False)
