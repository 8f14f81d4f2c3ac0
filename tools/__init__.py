"""Command-line front ends of geom (installed as ``geom_tools``): the console script ``geom <command>``
(:mod:`geom_tools.cli`; the built-in commands in :mod:`geom_tools.commands`, a plugin like any other,
and :mod:`geom_tools.flow_cli`), the helpers they and the benchmarks share (:mod:`geom_tools._common`)
and the benchmark scripts. They parse arguments, show progress, print and write files; the maths
lives in :mod:`geom`."""
