"""Build hooks setup.cfg cannot state: logcap's optional compiled modules (pure-Python fallbacks
exist for each; tests compare the two)."""

from setuptools import Extension, setup

EXTENSIONS = [
    Extension("logcap.pipeline.stages._opensips", ["logcap/pipeline/stages/_opensips.c"],
              depends=["logcap/pipeline/stages/_store.h"], optional=True, extra_compile_args=["-O2"]),
    Extension("logcap.pipeline.stages._attach", ["logcap/pipeline/stages/_attach.c"],
              depends=["logcap/pipeline/stages/_store.h"], optional=True, extra_compile_args=["-O2"]),
    Extension("logcap.sinks.loki._snappy", ["logcap/sinks/loki/_snappy.c"],
              optional=True, extra_compile_args=["-O2"]),
    Extension("logcap.sources._line_automaton", ["logcap/sources/_line_automaton.c"],
              optional=True, extra_compile_args=["-O2"]),
    Extension("logcap.sinks.loki._protobuf", ["logcap/sinks/loki/_protobuf.c"],
              optional=True, extra_compile_args=["-O2"]),
    Extension("logcap.state.buffer._line_block", ["logcap/state/buffer/_line_block.c"],
              optional=True, extra_compile_args=["-O2"]),
]

setup(ext_modules=EXTENSIONS)
