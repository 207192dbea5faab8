"""Work that spans independent outputs, planned as units with byte sizes, then executed.

``plan`` balances units over workers deterministically; ``pool`` runs them in this process or in
``--jobs N`` forked worker processes; ``torchrun`` runs them over the ranks of a torch.distributed
group (gloo) when the process was started by ``torchrun``. The units and what each writes never
depend on the number of workers, so neither do the output bytes.
"""

from ckpttool.parallel.plan import balance, default_jobs
from ckpttool.parallel.pool import run_units
from ckpttool.parallel.torchrun import Ranks, ranks_from_env, run_split

__all__ = ["balance", "default_jobs", "run_units", "Ranks", "ranks_from_env", "run_split"]
