"""S3 objects (AWS or any S3-compatible store): ``s3://bucket/key.csv`` and ``….parquet``.

The object is fetched into the staging directory by boto3's transfer manager — parallel
ranged GETs, so a large object arrives at the store's full bandwidth — and then read by the
local CSV or Parquet connector. The CSV byte ranges are therefore only a transport detail:
parsing (quoted newlines across range boundaries included) and typing follow exactly the
same rules as a local CSV, and the fingerprint is the sha256 of the object's bytes.

Settings come from the environment, as seed 002 says: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ENDPOINT_URL`` and ``AWS_ALLOW_HTTP``
(an ``http://`` endpoint, e.g. MinIO or LocalStack, is refused unless it is true). A source
kept in another account may carry its own key in the URI's user info, best as placeholders:
``s3://${LEDGER_KEY_ID}:${LEDGER_SECRET}@bucket/key.csv``, resolved only when it is fetched.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa

from kalla.connectors.base import Connector, Filter, Progress, staged_path
from kalla.connectors.csv import TEXT_SUFFIXES, CsvConnector
from kalla.connectors.parquet import ParquetConnector
from kalla.errors import SourceError, SourceUnavailableError
from kalla.secrets import MASK, resolve_env
from kalla.settings import Settings

_PART_BYTES = 8 << 20  # ranged GET size; several run at once
_CONCURRENCY = 8
_TRUE = ("1", "true", "yes", "on")


def s3_client(credentials: tuple[str, str] | None = None) -> Any:
    """A boto3 S3 client configured from the AWS_* environment variables; ``credentials``
    (access key id, secret) replace the environment's."""
    import boto3  # the registry checked that the 's3' extra is installed
    from botocore.config import Config

    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    allow_http = os.environ.get("AWS_ALLOW_HTTP", "").strip().lower() in _TRUE
    if endpoint and endpoint.lower().startswith("http://") and not allow_http:
        raise SourceError(
            f"AWS_ENDPOINT_URL is plain http ({endpoint}); set AWS_ALLOW_HTTP=true to "
            "allow an unencrypted S3 endpoint"
        )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    config = Config(
        region_name=region,
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=10,
        # Custom endpoints (MinIO, LocalStack, moto) serve buckets as paths, not host names.
        s3={"addressing_style": "path" if endpoint else "auto"},
    )
    keys = {}
    if credentials is not None:
        keys = {"aws_access_key_id": credentials[0], "aws_secret_access_key": credentials[1]}
    return boto3.session.Session(**keys).client("s3", endpoint_url=endpoint, config=config)


class S3Connector(Connector):
    kind = "s3"
    fetch_share = 0.5

    def __init__(self, uri: str, *, alias: str, settings: Settings) -> None:
        super().__init__(uri, alias=alias, settings=settings)
        parts = urlsplit(uri)
        self.label = f"source '{alias}' ({self.display_uri})"
        userinfo, at, bucket = parts.netloc.rpartition("@")
        self.bucket = resolve_env(bucket, alias=alias)
        self.key = resolve_env(unquote(parts.path.lstrip("/")), alias=alias)
        self.suffix = Path(self.key).suffix.lower()
        self.is_csv = self.suffix in TEXT_SUFFIXES
        self._userinfo = userinfo if at else None  # resolved only when the object is fetched
        if self._userinfo is not None and ":" not in self._userinfo:
            raise SourceError(  # not naming the URI: what stands before @ may be the secret
                f"source '{alias}': credentials in an S3 URI are ACCESS_KEY_ID:SECRET "
                "(s3://${KEY_ID}:${SECRET}@bucket/key), or leave them to AWS_* variables"
            )
        self._local: CsvConnector | ParquetConnector | None = None
        self._download: Path | None = None
        self._kept = False  # the fetched Parquet object became the staged file
        self._lock = threading.Lock()

    # ---- hooks ----------------------------------------------------------------------

    def prepare(self, progress: Progress) -> None:
        with self._lock:
            if self._local is not None:
                return
            suffix = self.suffix if self.is_csv else ".parquet"
            staged = staged_path(self.staging_dir, self.alias)  # sanitised name, dir made
            target = staged.with_name(f".{staged.stem}.download{suffix}")
            self._fetch(target, progress)
            self._download = target
            local = CsvConnector if self.is_csv else ParquetConnector
            if not self.is_csv:
                final = staged_path(self.staging_dir, self.alias)
                os.replace(target, final)
                self._download = target = final
            self._local = local(
                self.uri,
                alias=self.alias,
                settings=self.settings,
                path=target,
                shown=self.display_uri,
            )
            self._local.reading = self.reading  # the recipe's format applies to the object

    def columns(self) -> list[str]:
        return self._connector().columns()

    def read(self, progress: Progress, filters: Sequence[Filter] = ()) -> pa.Table:
        return self._connector().read(progress, filters)

    def in_place(self) -> tuple[Path, pa.Schema, int] | None:
        placed = self._connector().in_place()  # a fetched Parquet object is a staged file
        self._kept = placed is not None
        return placed

    def source_fingerprint(self) -> dict[str, object] | None:
        return self._connector().source_fingerprint()

    def close(self) -> None:
        # A fetched CSV served its purpose once staged as Parquet; a failed stage leaves nothing.
        if self._download is not None and not self._kept:
            self._download.unlink(missing_ok=True)
            self._download = None

    # ---- helpers --------------------------------------------------------------------

    def _connector(self) -> CsvConnector | ParquetConnector:
        if self._local is None:
            self.prepare(Progress(None))
        assert self._local is not None
        return self._local

    def _fetch(self, target: Path, progress: Progress) -> None:
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        client = s3_client(self._credentials())
        try:
            size = int(client.head_object(Bucket=self.bucket, Key=self.key)["ContentLength"])
            done = [0]

            def advanced(count: int) -> None:
                done[0] += count
                progress(done[0] / max(size, 1))

            client.download_file(
                self.bucket,
                self.key,
                str(target),
                Callback=advanced,
                Config=TransferConfig(
                    multipart_threshold=_PART_BYTES,
                    multipart_chunksize=_PART_BYTES,
                    max_concurrency=_CONCURRENCY,
                ),
            )
        except NoCredentialsError:
            raise SourceUnavailableError(
                f"{self.label}: no AWS credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ) from None
        except ClientError as exc:
            target.unlink(missing_ok=True)
            raise self._client_error(exc, client) from None
        except BotoCoreError as exc:
            target.unlink(missing_ok=True)
            endpoint = os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
            raise SourceUnavailableError(
                f"{self.label}: cannot reach S3 at {endpoint}: {type(exc).__name__}"
            ) from None
        except BaseException:
            target.unlink(missing_ok=True)
            raise

    def _credentials(self) -> tuple[str, str] | None:
        if self._userinfo is None:
            return None
        key_id, _, secret = self._userinfo.partition(":")
        if secret == MASK:
            raise SourceError(
                f"{self.label}: the secret is *** (a redacted URI): write it as ${{ENV_NAME}} "
                "and set ENV_NAME where the source is read"
            )
        return (
            resolve_env(unquote(key_id), alias=self.alias),
            resolve_env(unquote(secret), alias=self.alias),
        )

    def _client_error(self, exc: Any, client: Any) -> SourceError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket") or status == 404:
            if code == "NoSuchBucket" or not self._bucket_exists(client):
                return SourceError(f"{self.label}: bucket '{self.bucket}' does not exist")
            return SourceError(f"object not found: {self.display_uri} (source '{self.alias}')")
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch") or (
            status == 403
        ):
            return SourceUnavailableError(
                f"{self.label}: S3 refused access ({code or status}); check "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket policy"
            )
        return SourceUnavailableError(f"{self.label}: S3 error {code or status}")

    def _bucket_exists(self, client: Any) -> bool:
        """HEAD on a missing key says only 404; ask whether the bucket is the missing part."""
        from botocore.exceptions import ClientError

        try:
            client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404
        return True
