"""Build hooks setup.cfg cannot state: logcap's optional compiled modules (pure-Python fallbacks exist)."""
from setuptools import Extension, setup
EXTENSIONS = [
    Extension("logcap.sinks.loki._snappy", ["logcap/sinks/loki/_snappy.c"], optional=True, extra_compile_args=["-O2"]),
    Extension("logcap.sinks.loki._protobuf", ["logcap/sinks/loki/_protobuf.c"], optional=True, extra_compile_args=["-O2"]),
]
setup(ext_modules=EXTENSIONS)
