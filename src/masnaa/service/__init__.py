"""The live driver of the core: the control loop and the service functions the API calls.

- ``loop``: the control loop, one per database (``lease``); ``daemon``: its process
  (``python -m masnaa.service.daemon``);
- ``snapshot``: the scheduler's driver-owned state built from the store;
- ``apply``: a ``Decision`` written to the store; ``reconcile``: what an ended run means;
- ``launch``: executors per site and launch specs;
- ``jobs`` (submit, list, cancel), ``job_views`` (queue, logs, usage), ``tenancy``, ``tokens``:
  what users and operators ask of the API; ``metrics``: Prometheus.

Nothing is imported here, so importing one module does not import the others.
"""
