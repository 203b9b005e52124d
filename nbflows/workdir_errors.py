"""The base class of errors about a file a run reads or holds.

A workdir lock held by another run, a checkpoint none of whose steps can be
read, a truncated config.json, a stale or damaged neighbour index: each is
raised as a subclass of `WorkdirFileError`, whose message names the file and
what to do. The command lines (`train.cli`) print such an error as one line
and exit with code 1, as they print a config error with code 2. The module
imports nothing, so the command line can catch these before JAX is loaded.
"""


class WorkdirFileError(Exception):
  """A file of a run's workdir or cache stops the run; the message says why."""
