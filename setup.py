"""Build hook: a wheel carries the repository's top-level ``data/`` and ``formulations/`` as
``halo_opt/_data/`` (they stay top-level in the repository; ``halo_opt.paths`` finds either).
Editable installs (``pip install -e .``) read them from the checkout and copy nothing."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("data", "formulations")


class BuildPyWithData(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        root = Path(__file__).resolve().parent
        dest = Path(self.build_lib) / "halo_opt" / "_data"
        for name in SHIPPED:
            if (root / name).is_dir():
                shutil.rmtree(dest / name, ignore_errors=True)
                shutil.copytree(root / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithData})
