"""Benchmarks of lowrank_core: the code behind ``lowrank-core bench ...`` and ``lowrank-core demo``.

The modules under this package run the benchmarks (``_qr_savings``, ``_problems``,
``_scale``), format and write their results (``_report``), plot them (``_plots``) and
narrate the demo (``_demo``); ``lowrank_core.__main__`` parses the command line over them.
"""
