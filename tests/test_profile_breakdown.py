"""scripts/profile_breakdown.py: py-spy stacks sorted into the sweep's parts."""

from __future__ import annotations

from tests.helpers import load_script


def _script():
    return load_script("profile_breakdown")


def test_stacks_are_sorted_into_the_sweeps_parts_and_counted_in_seconds():
    lines = [
        "main (x.py:1);_train (ebmbench/runner.py:258);loss (plugins/methods/cd.py:3) 40\n",
        "_train (ebmbench/runner.py:270);__call__ (ebmbench/learning_curve.py:90) 4\n",
        "evaluate_spec (ebmbench/runner.py:450);sample (plugins/samplers/hmc.py:60) 20\n",
        "evaluate_spec (ebmbench/runner.py:470);_evaluate (ebmbench/runner.py:360);"
        "compute (plugins/metrics/mmd.py:80);cdist (torch) 10\n",
        "execute_sampler_task (ebmbench/sampler_board.py:550) 6\n",
        "write_leaderboards (ebmbench/leaderboard/__init__.py:90) 2\n",
        "<module> (x.py:1);_find_and_load (<frozen importlib._bootstrap>:1165) 8\n",
        "select (selectors.py:415) 1\n",
    ]
    seconds = _script().breakdown(lines, rate=20)
    assert seconds == {"training": 2.0, "training: learning-curve points": 0.2,
                       "evaluation sampling": 1.0, "metric: mmd": 0.5, "sampler board": 0.3,
                       "render": 0.1, "imports": 0.4, "other": 0.05}
