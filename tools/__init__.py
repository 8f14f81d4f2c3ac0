"""Command-line front ends of geom (installed as ``geom_tools``): the console script ``geom <command>``
(:mod:`geom_tools.cli`) and the benchmark script. They parse arguments, show progress, print and
write files; the maths lives in :mod:`geom`."""
