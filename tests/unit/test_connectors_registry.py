"""The source-type registry: every declared kind resolves, every scheme and extension routes,
the connector classes agree with what their kind declares, and every lookup that fails says
what would work (the closest choice, the valid ones, the exact pip command)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from kalla.connectors import connector_for, stage_source
from kalla.connectors.base import (
    SupportsFilterPushdown,
    SupportsLimitedRead,
    SupportsPartitionedRead,
)
from kalla.connectors.registry import (
    FILE_EXTENSIONS,
    KINDS,
    PERSISTENT_KINDS,
    RECIPE_TYPES,
    SourceKind,
    check_recipe_type,
    kind_named,
    kinds_of_type,
    locate,
    same_server,
)
from kalla.errors import MissingDependencyError, RecipeError, SourceError
from kalla.recipe import parse_recipe
from kalla.secrets import SECRET_PARAMS
from kalla.settings import Settings

SETTINGS = Settings()
PYPROJECT = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
KIND_IDS = [kind.name for kind in KINDS]
# A URI of each persistent kind that routes without touching the network.
PERSISTENT_URIS = {
    "postgres": "postgres://app@db.internal:5432/ledger?table=invoices",
    "mysql": "mysql://app@db.internal:3306/shop?table=orders",
    "s3": "s3://bucket/exports/payments.csv",
}


def sample_uri(kind: SourceKind, tmp_path: Path) -> str:
    if kind.persistent:
        return PERSISTENT_URIS[kind.name]
    path = tmp_path / f"data{kind.extensions[0]}"
    path.write_bytes(b"a\n1\n")  # routing reads nothing but the name
    return str(path)


# ---- every declared kind ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_every_kind_resolves_to_its_connector(kind: SourceKind, tmp_path: Path) -> None:
    cls = kind.connector_class()
    assert cls.kind == kind.name
    assert kind_named(kind.name) is kind
    assert kind in kinds_of_type(kind.recipe_type)
    connector = connector_for(sample_uri(kind, tmp_path), alias="src", settings=SETTINGS)
    assert type(connector) is cls
    assert connector.settings is SETTINGS and connector.staging_dir == SETTINGS.staging_path


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_capabilities_are_what_the_connector_implements(kind: SourceKind) -> None:
    cls = kind.connector_class()
    caps = kind.capabilities
    assert caps.filter_pushdown == issubclass(cls, SupportsFilterPushdown)
    assert caps.partitioned_read == issubclass(cls, SupportsPartitionedRead)
    assert caps.preview == issubclass(cls, SupportsLimitedRead)
    assert set(getattr(cls, "driver_options", ())) <= set(kind.options)


@pytest.mark.parametrize("kind", [k for k in KINDS if k.extra], ids=lambda k: k.name)
def test_every_extra_is_a_pyproject_extra_with_its_drivers(kind: SourceKind) -> None:
    assert kind.extra is not None
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert kind.extra.name in extras
    assert f"kalla[{kind.extra.name}]" in kind.missing_message()
    assert kind.missing_modules() == []  # the dev install has every extra


def test_recipe_types_and_registrable_kinds_come_from_the_kinds() -> None:
    assert RECIPE_TYPES == ("file", "postgres", "mysql", "s3")
    assert [k.name for k in PERSISTENT_KINDS] == ["postgres", "mysql", "s3"]
    assert {k.name for k in kinds_of_type("file")} == {"csv", "parquet", "xlsx", "json"}
    assert tuple(e for k in kinds_of_type("file") for e in k.extensions) == FILE_EXTENSIONS


def test_secret_options_are_ones_redaction_masks() -> None:
    for kind in KINDS:
        assert set(kind.secret_options) <= set(kind.options) & SECRET_PARAMS, kind.name
        assert {o for o in kind.options if o in SECRET_PARAMS} == set(kind.secret_options)
        assert kind.capabilities.secrets_in_uri or not kind.secret_options
    assert [k.name for k in KINDS if k.capabilities.secrets_in_uri] == ["postgres", "mysql", "s3"]


# ---- every scheme and extension routes --------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "kind"),
    [(s, k.name) for k in KINDS for s in k.schemes],
)
def test_every_scheme_routes(scheme: str, kind: str) -> None:
    uri = PERSISTENT_URIS[kind].replace(f"{kind_named(kind).schemes[0]}://", f"{scheme}://", 1)
    assert locate(uri, alias="s").kind.name == kind
    assert connector_for(uri, alias="s", settings=SETTINGS).kind == kind


@pytest.mark.parametrize(
    ("extension", "kind"),
    [(e, k.name) for k in KINDS if not k.persistent for e in k.extensions],
)
def test_every_file_extension_routes(extension: str, kind: str, tmp_path: Path) -> None:
    path = tmp_path / f"Data{extension.upper()}"  # extensions match in any case
    path.write_bytes(b"x")
    assert locate(str(path), alias="f").kind.name == kind
    assert locate(f"file://{path}", alias="f").kind.name == kind


@pytest.mark.parametrize("extension", kind_named("s3").extensions)
def test_every_object_extension_routes_to_s3(extension: str) -> None:
    assert locate(f"s3://bucket/dir/file{extension}", alias="o").kind.name == "s3"


def test_a_parquet_file_without_its_extension_is_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "export.bin"
    pq.write_table(pa.table({"a": [1]}), path)
    assert locate(str(path), alias="p").kind.name == "parquet"


# ---- lookups that fail say what would work ----------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "module"),
    [(k, m) for k in KINDS if k.extra for m in k.extra.modules],
    ids=lambda v: v.name if isinstance(v, SourceKind) else v,
)
def test_missing_driver_names_the_extra_and_the_pip_command(
    kind: SourceKind, module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = sample_uri(kind, tmp_path)
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(MissingDependencyError) as info:
        connector_for(uri, alias="src", settings=SETTINGS)
    expected = {
        "xlsx": "XLSX sources need the 'xlsx' extra: pip install 'kalla[xlsx]'",
        "postgres": "PostgreSQL sources need the 'postgres' extra: pip install 'kalla[postgres]'",
        "mysql": "MySQL sources need the 'mysql' extra: pip install 'kalla[mysql]'",
        "s3": "S3 sources need the 's3' extra: pip install 'kalla[s3]'",
    }
    assert str(info.value) == expected[kind.name]
    assert info.value.exit_code == 78 and info.value.status == 501


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("postgress", "unknown source type 'postgress' (did you mean 'postgres'?)"),
        ("File", "unknown source type 'File' (did you mean 'file'?)"),
        ("bigquery", "unknown source type 'bigquery'; valid types: file, postgres, mysql, s3"),
        ("elasticsearch", "valid types: file, postgres, mysql, s3"),
    ],
)
def test_unknown_recipe_type_names_the_closest_and_the_valid_ones(value: str, message: str) -> None:
    with pytest.raises(ValueError, match="unknown source type") as info:
        check_recipe_type(value)
    assert message in str(info.value)


def recipe(left: dict[str, object]) -> dict[str, object]:
    return {
        "recipe_id": "r",
        "name": "r",
        "match_sql": "SELECT * FROM a JOIN b ON a.id = b.id",
        "sources": {
            "left": {"alias": "a", "primary_key": ["id"], **left},
            "right": {"alias": "b", "type": "file", "primary_key": ["id"]},
        },
    }


@pytest.mark.parametrize(
    ("left", "fragment"),
    [
        ({"type": "bigquery", "uri": "bq://p/d/t"}, "unknown source type 'bigquery'"),
        (
            {"type": "postgres", "uri": "mysql://u:secret@h/db?table=t"},
            "needs a postgres:// or postgresql:// URI, not mysql://u:***@h/db?table=t",
        ),
        ({"type": "s3", "uri": "/etc/passwd"}, "needs a s3:// URI, not /etc/passwd"),
        ({"type": "file", "uri": "postgres://h/db?table=t"}, "has a postgres:// URI"),
        ({"type": "mysql"}, "of type 'mysql' needs a 'uri'"),
    ],
)
def test_the_recipe_validator_reads_the_registry(left: dict[str, object], fragment: str) -> None:
    with pytest.raises(RecipeError) as info:
        parse_recipe(recipe(left))
    assert any(fragment in p for p in info.value.problems), info.value.problems
    assert "secret" not in str(info.value)


def test_a_file_source_may_name_a_local_path() -> None:
    parsed = parse_recipe(recipe({"type": "file", "uri": "file:///data/a.csv"}))
    assert parsed.sources.left.is_file
    assert [k.name for k in parsed.sources.right.kinds] == ["csv", "parquet", "xlsx", "json"]


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(SourceError) as info:
        stage_source(str(missing), alias="payments", settings=SETTINGS)
    assert str(info.value) == f"file not found: {missing} (source 'payments')"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("payments.cvs", "did you mean '.csv'?"),
        ("payments.parqet", "did you mean '.parquet'?"),
        ("payments.jsn", "did you mean '.json'?"),
        ("notes.docx", "unsupported file type '.docx'"),
    ],
)
def test_unknown_extension_names_closest(tmp_path: Path, name: str, message: str) -> None:
    path = tmp_path / name
    path.write_text("a,b\n1,2\n")
    with pytest.raises(SourceError, match=r"supported: \.csv") as info:
        connector_for(str(path), alias="p", settings=SETTINGS)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("postgress://u:pw@h/db?table=t", "did you mean 'postgres://'?"),
        ("mysqll://u@h/db?table=t", "did you mean 'mysql://'?"),
        ("gs://bucket/x.csv", "unsupported URI scheme 'gs://'"),
        ("s3://bucket/x.xml", "unsupported file type '.xml'"),
        ("s3://bucket/x.csvv", "did you mean '.csv'?"),
        ("s3://bucket/", "S3 URIs look like s3://bucket/exports/payments.csv"),
        ("s3://bucket/x.csv?region=eu", "unknown URI option 'region' (options: none for S3"),
        (
            "postgres://u:pw@h/db?table=t&partiton_on=id",
            "unknown URI option 'partiton_on' (did you mean 'partition_on'?)",
        ),
        ("mysql://u:pw@h/db?table=t&sslmode=x", "(options: table, partitions, partition_on,"),
    ],
)
def test_unknown_scheme_or_option_names_closest(uri: str, message: str) -> None:
    with pytest.raises(SourceError) as info:
        connector_for(uri, alias="p", settings=SETTINGS)
    assert message in str(info.value)
    assert "pw@" not in str(info.value)


def test_file_uri_and_env_placeholder_in_path(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "p.csv"
    path.write_text("a\n1\n")
    assert connector_for(f"file://{path}", alias="p", settings=SETTINGS).kind == "csv"
    monkeypatch.setenv("KALLA_TEST_DIR", str(tmp_path))
    assert connector_for("${KALLA_TEST_DIR}/p.csv", alias="p", settings=SETTINGS).kind == "csv"
    monkeypatch.delenv("KALLA_TEST_DIR")
    with pytest.raises(SourceError, match=r"\$\{KALLA_TEST_DIR\} is not set"):
        connector_for("${KALLA_TEST_DIR}/p.csv", alias="p", settings=SETTINGS)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is a directory"):
        connector_for(str(tmp_path), alias="p", settings=SETTINGS)


# ---- the credential lookup's notion of "the same server" --------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("postgres://app:***@DB:5432/x?table=t", "postgresql://app:${PW}@db:5432/y?table=u", True),
        ("mysql://app:***@db/x?table=t", "mariadb://app:${PW}@db/x?table=t", True),
        ("postgres://app:***@db:5432/x", "postgres://other:${PW}@db:5432/x", False),
        ("postgres://app:***@db:5432/x", "postgres://app:${PW}@db:6432/x", False),
        ("postgres://app:***@db/x", "mysql://app:${PW}@db/x", False),
    ],
)
def test_same_server_is_kind_host_port_and_user(a: str, b: str, same: bool) -> None:
    assert (same_server(a) == same_server(b)) is same
    assert same_server(a) is not None


def test_kinds_without_secrets_or_host_lend_nothing() -> None:
    assert same_server("/data/payments.csv") is None
    assert same_server("https://u:p@example.com/x") is None


@pytest.mark.parametrize(
    ("uri", "url"),
    [
        (
            "postgres://app:p%40ss@[::1]:6432/ledger?table=t&sslmode=require",
            "postgresql://app:p%40ss@[::1]:6432/ledger?sslmode=require",
        ),
        ("mysql://root@db.internal/shop?table=orders", "mysql://root@db.internal:3306/shop"),
        (
            "mysql://root@db/shop?table=orders&password=p%26w",  # the query form, as libpq has
            "mysql://root:p%26w@db:3306/shop",
        ),
    ],
)
def test_reader_url_keeps_credentials_host_and_driver_options(uri: str, url: str) -> None:
    connector = connector_for(uri, alias="t", settings=SETTINGS)
    assert connector._driver_url() == url  # type: ignore[attr-defined]
