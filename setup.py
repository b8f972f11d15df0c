"""Which packages the distribution holds; everything else is declared in setup.cfg.

setup.cfg's `packages = find:` cannot also name a package that lives outside the
package folder, and mxarchiverd.migrations is mapped from the top-level migrations/
(setup.cfg's package_dir). So the list is found here, plus that one mapped package:
a list kept by hand once left out mxarchiverd.sinks.storage, and no installed daemon
archived any media (tests/integration/test_installed_wheel.py checks the wheel).
"""
from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["mxarchiverd", "mxarchiverd.*"]), "mxarchiverd.migrations"])
