"""Where the shipped files are: the configs (``configs/<task>/``), the digits campaign
(``datasets/digits_surrogate.*``) and its surrogate (``surrogates/digits/``).

In a checkout (or an editable install) they are the checkout's own folders; a non-editable install
(``pip install .``) carries a copy of them inside the package, ``lightning_nas/shipped/``, laid out
as in the checkout, so the paths the configs write (relative to each config file,
:func:`lightning_nas.parsing.with_config_paths`) hold in both. ``python -m lightning_nas configs``
prints where they are. Nothing is ever written into the installed copy
(:func:`refuse_installed_copy`).
"""

from __future__ import annotations

from pathlib import Path

from lightning_nas.errors import UserError

PACKAGE = Path(__file__).resolve().parent
INSTALLED = PACKAGE / "shipped"
"""The copy a non-editable install carries (absent in a checkout)."""
CHECKOUT = PACKAGE.parent
SHIPPED = ("configs", "datasets", "surrogates")
"""The folders shipped with the project (in the wheel: ``configs/*/*.yaml``, the digits campaign and surrogate)."""


def shipped_root() -> Path:
    """The folder holding ``configs/``, ``datasets/`` and ``surrogates/``: the installed copy, else the
    checkout this package is imported from."""
    for root in (INSTALLED, CHECKOUT):
        if (root / "configs" / "digits" / "search.yaml").is_file():
            return root
    raise UserError(f"the shipped configs are neither in {INSTALLED} (a non-editable install) nor in "
                    f"{CHECKOUT / 'configs'} (a checkout): reinstall lightning-nas")


def shipped_configs() -> list[Path]:
    """Every shipped config file, ``configs/<task>/<name>.yaml``, sorted."""
    return sorted((shipped_root() / "configs").glob("*/*.yaml"))


def inside_installed_copy(path: str | Path) -> bool:
    """True when ``path`` lies inside the installed package's copy of the shipped files."""
    try:
        Path(path).resolve().relative_to(INSTALLED)
    except ValueError:
        return False
    return INSTALLED.is_dir()


def refuse_installed_copy(path: str | Path, what: str, option: str) -> None:
    """A :class:`UserError` when an output (``what``, set by ``option``) would be written inside the
    installed package: the shipped configs' output paths are relative to them, so run from an
    installed config they point into site-packages."""
    if inside_installed_copy(path):
        raise UserError(f"{what} {path} is inside the installed package's shipped files ({INSTALLED}); point "
                        f"{option} at a folder of yours (or copy the configs out of it: python -m lightning_nas "
                        "configs prints where they are)")
