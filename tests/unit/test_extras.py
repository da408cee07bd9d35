"""``kalla.extras`` agrees with pyproject.toml's extras and the README's table, and a missing
module of any extra becomes the one line naming it."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from kalla.connectors.registry import KINDS
from kalla.errors import MissingDependencyError
from kalla.extras import EXTRAS, extra_providing, missing_extra, require

ROOT = Path(__file__).parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
OPTIONAL = PYPROJECT["optional-dependencies"]
GROUPS = {"all", "dev", "browser"}  # extras of extras, or of the test tools


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _distributions_of(extra: str) -> set[str]:
    """The distributions an extra installs directly, and what they depend on (one level)."""
    direct = {_name(r) for r in OPTIONAL[extra]}
    found = set(direct)
    for dist in direct:
        for requirement in metadata.requires(dist) or ():
            if "extra ==" not in requirement:
                found.add(_name(requirement))
    return found


def test_every_pyproject_extra_is_declared_and_back() -> None:
    assert set(EXTRAS) == set(OPTIONAL) - GROUPS
    assert set(OPTIONAL["all"][0].partition("[")[2].rstrip("]").split(",")) == (
        set(EXTRAS) - {"bench"}
    )


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_each_extras_modules_come_from_its_packages(extra: str) -> None:
    """The dev install has every extra: each module listed comes from a package of the
    extra, and each package of the extra provides a module listed (so that any of them
    missing is caught)."""
    providers = metadata.packages_distributions()
    installs = _distributions_of(extra)
    for module in EXTRAS[extra].modules:
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [])}
        assert dists & installs, (module, dists, installs)
    for requirement in OPTIONAL[extra]:
        dist = _name(requirement)
        provided = {
            m for m, ds in providers.items() if dist in {d.lower().replace("_", "-") for d in ds}
        }
        assert provided & set(EXTRAS[extra].modules), (dist, provided)
    assert EXTRAS[extra].missing_modules() == []


def test_the_registry_uses_the_same_extras() -> None:
    for kind in KINDS:
        if kind.extra is not None:
            assert kind.extra is EXTRAS[kind.extra.name], kind.name


def test_the_readme_lists_every_extra_with_what_it_enables() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| extra | enables |") :].split("\n\n")[0]
    listed = re.findall(r"^\| `([a-z0-9]+)` \|", table, flags=re.MULTILINE)
    assert set(listed) == set(EXTRAS) | {"all"}


@pytest.mark.parametrize(
    ("module", "extra"),
    [(m, e.name) for e in EXTRAS.values() for m in e.modules if extra_providing(m) is e],
)
def test_a_missing_module_names_its_extra(module: str, extra: str) -> None:
    error = missing_extra(ModuleNotFoundError(f"No module named '{module}'", name=module))
    assert isinstance(error, MissingDependencyError)
    assert error.message == (
        f"the module '{module}' is not installed; it comes with the '{extra}' extra: "
        f"pip install 'kalla[{extra}]'"
    )
    submodule = ModuleNotFoundError("x", name=f"{module}.sub")
    assert missing_extra(submodule) is not None


def test_other_import_errors_stay_what_they_are() -> None:
    assert missing_extra(ModuleNotFoundError("x", name="kalla.nope")) is None
    assert missing_extra(ModuleNotFoundError("x", name="left_pad")) is None
    assert missing_extra(ValueError("boom")) is None
    assert missing_extra(ImportError("cannot import name 'x'")) is None


def test_require_names_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    require("server", "kalla serve")  # installed here
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(MissingDependencyError) as info:
        require("server", "kalla serve")
    assert info.value.message == (
        "kalla serve needs the 'server' extra: pip install 'kalla[server]'"
    )
    assert info.value.exit_code == 78
