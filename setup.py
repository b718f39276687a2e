"""The hot path's C extensions, each optional: where one cannot be built (no C compiler), its Python twins run.

- ``monitor.ingest._decode``: the parser of plain messages, the batch decoder's checks (``monitor/ingest/events.py``);
- ``monitor.state._probe``: linear probing into the label store's index (``monitor/state/labels.py``);
- ``detectors._text_counts``: the text descriptors' character counts of ASCII texts (``detectors/text_descriptors.py``);
- ``detectors._adwin_cut``: ADWIN's cut test, the change watch's per-block cost (``detectors/adwin.py``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(name, [name.replace(".", "/") + ".c"], optional=True)
        for name in ("monitor.ingest._decode", "monitor.state._probe", "detectors._text_counts", "detectors._adwin_cut")
    ]
)
