"""Database tables (PostgreSQL, MySQL/MariaDB) read straight into Arrow, in parallel ranges.

One module per job: ``location`` (the URI's table, options and credentials), ``catalog``
(columns and declared types), ``filters`` (FilterConditions → a WHERE clause with the
driver's quoting), ``partitions`` (partition planning, pure functions), ``reader`` (the
parallel, cancellable reader), ``decimals`` (how decimals travel and become decimal128) and
``table`` (``SqlTableConnector``: the flow, with the hooks each dialect fills).
"""

from kalla.connectors.sql.catalog import Catalog, Column
from kalla.connectors.sql.location import ConnectionInfo
from kalla.connectors.sql.reader import Interrupts
from kalla.connectors.sql.table import SqlTableConnector

__all__ = ["Catalog", "Column", "ConnectionInfo", "Interrupts", "SqlTableConnector"]
