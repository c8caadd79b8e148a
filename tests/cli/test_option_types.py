"""Counts and probabilities on the command line are checked by the parser, with the option named."""

import pytest

from sav_router.cli import main


@pytest.mark.parametrize("argv, shown", [
    (["monitor", "--window", "0"], "--window: must be at least 1"),
    (["review", "--limit", "-3"], "--limit: must be at least 1"),
    (["audit", "--confidence", "1.5"], "--confidence: must be strictly between 0 and 1"),
])
def test_an_out_of_range_count_or_probability_is_a_usage_error_naming_the_option(argv, shown, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2 and shown in capsys.readouterr().err
