"""What a user runs, one module each: ``train``, ``evaluate``, ``generate``, ``tag``,
``export``, ``report``, ``serve`` (and ``long_range_report``). ``scripts/*.py`` and the
``seqmodels-*`` console scripts call their ``main``. The top floor: may import any package,
and nothing imports it.
"""
