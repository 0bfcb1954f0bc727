"""`python -m jaxlottery`: the study from the command line, as experiments/run.py."""

from jaxlottery.cli import console

console()
