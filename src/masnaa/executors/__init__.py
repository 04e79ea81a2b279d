"""Executors: the only code that touches processes, Slurm or GPUs.

``base`` states the contract every executor honours; ``local`` runs jobs as
child processes of this machine; ``slurm`` hands them to a Slurm site. Keep
this module free of imports: the local supervisor (``shim``) starts fast.
"""
